"""The EOT distribution as a batched, differentiable renderer (kornia), run on the scenes' device.

One call draws per-sample parameters from a `torch.Generator` (seeded, CPU-side, so runs replay exactly), pastes the
patch into each scene through a perspective homography, then applies lighting and camera effects to the frame:

    patch texture -> fitted colour model -> per-channel printer jitter -> homography (placement, rotation, tilt)
    -> composite over scene -> gamma, contrast, brightness, saturation, hue -> Gaussian blur, motion blur
    -> sensor noise -> JPEG (kornia's differentiable codec, computed faster: patchlab.eot.jpeg)

Corners are returned in pixel coordinates (x, y) of the frame, pixel centres at integers, in the order
top-left, top-right, bottom-right, bottom-left of the patch image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.weak import WeakTensorKeyDictionary

from patchlab.eot.colour import ColourModel
from patchlab.eot.config import EOTConfig, load_config
from patchlab.eot.filters import gaussian_blur, motion_blur
from patchlab.eot.jpeg import jpeg
from patchlab.eot.ops import add_noise, gamma
from patchlab.errors import PatchlabError

# RGB <-> YIQ: saturation scales (I, Q), hue rotates them.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_UNIT_SQUARE = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])  # the corners, in order
FOCAL = 1.5  # camera focal length in units of the frame side (about 37 degrees field of view)
MAX_AREA = 0.9  # the largest share of the frame a pasted object (a patch, a printed photo) covers, after area_scale
MAX_PATCH_AREA = 0.5  # the largest nominal patch area: a preset's area_scale up to 2 then stays near MAX_AREA


@dataclass
class EOTParams:
    """Per-sample draws (all (B,) or (B, k) tensors on the CPU)."""

    area: torch.Tensor
    angle: torch.Tensor
    tilt: torch.Tensor
    tilt_axis: torch.Tensor
    position: torch.Tensor
    gain: torch.Tensor
    offset: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    gamma: torch.Tensor
    blur: torch.Tensor
    motion_on: torch.Tensor
    motion_angle: torch.Tensor
    motion_direction: torch.Tensor
    noise_sigma: torch.Tensor
    noise: torch.Tensor
    jpeg_on: torch.Tensor
    jpeg_quality: torch.Tensor

    def without(self, *effects: str) -> "EOTParams":
        """The same draws with the named effects (see EFFECTS) set to their neutral values."""
        check_effects(effects)
        changes = {}
        for effect in effects:
            changes.update(EFFECTS[effect])
        return replace(self, **{k: torch.full_like(getattr(self, k), v) for k, v in changes.items()})

    def select(self, rows: slice) -> "EOTParams":
        """The draws of samples `rows` (a data-parallel rank's share of a batch)."""
        return EOTParams(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


# The physical effects a breakdown can switch off, as the per-sample draws that make them up and their neutral values.
EFFECTS: dict[str, dict[str, float]] = {
    "rotation": {"angle": 0.0},
    "tilt": {"tilt": 0.0},
    "printer_colour": {"gain": 1.0, "offset": 0.0},
    "photometric": {"brightness": 0.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0, "gamma": 1.0},
    "gaussian_blur": {"blur": 0.0},
    "motion_blur": {"motion_on": False},
    "noise": {"noise_sigma": 0.0},
    "jpeg": {"jpeg_on": False},
}
CAMERA_EFFECTS = ("gaussian_blur", "motion_blur", "noise", "jpeg")


def check_effects(effects) -> None:
    """Refuse names that are not in EFFECTS, in one line."""
    unknown = [e for e in effects if e not in EFFECTS]
    if unknown:
        raise PatchlabError(f"unknown EOT effect '{unknown[0]}'; choose from {', '.join(EFFECTS)}")


def _colour_mix(saturation: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) RGB -> RGB: scale YIQ's chroma (I, Q) by `saturation` and rotate it by `hue` turns."""
    ang = hue * 2 * math.pi
    s, zero, one = saturation, torch.zeros_like(saturation), torch.ones_like(saturation)
    chroma = torch.stack([torch.stack([one, zero, zero], -1),
                          torch.stack([zero, s * torch.cos(ang), -s * torch.sin(ang)], -1),
                          torch.stack([zero, s * torch.sin(ang), s * torch.cos(ang)], -1)], -2)
    return torch.linalg.inv(_YIQ) @ chroma @ _YIQ


def _boxes_and_warps(corners: torch.Tensor, sizing: torch.Tensor, size: int, th: int, tw: int):
    """The per-sample geometry of a paste, in float64 numpy (a few dozen tiny tensor ops otherwise cost more than the
    warp itself): each box's top-left (x0, y0) in the frame, the batch's box size (bh, bw) from `sizing`'s quads,
    and (B, 3, 3) matrices taking a box pixel (x, y, 1) to grid_sample's coordinates in the (th, tw) texture, whose
    box (-0.5, -0.5)..(tw - 0.5, th - 0.5) lands on each quad of `corners` (a homography, h33 = 1)."""
    quads = corners.detach().cpu().double().numpy()
    lo = np.clip(np.floor(quads.min(1)) - 1, 0, size).astype(np.int64)
    boxes = sizing.detach().cpu().double().numpy()
    extent = np.clip(np.ceil(boxes.max(1)) + 2, 0, size) - np.clip(np.floor(boxes.min(1)) - 1, 0, size)
    bw, bh = int(extent[:, 0].max()), int(extent[:, 1].max())
    x0, y0 = np.minimum(lo[:, 0], size - bw), np.minimum(lo[:, 1], size - bh)
    u, v = quads[..., 0] - x0[:, None], quads[..., 1] - y0[:, None]  # the quads in box coordinates
    x = np.array([-0.5, tw - 0.5, tw - 0.5, -0.5])[None].repeat(len(quads), 0)
    y = np.array([-0.5, -0.5, th - 0.5, th - 0.5])[None].repeat(len(quads), 0)
    one, zero = np.ones_like(x), np.zeros_like(x)
    system = np.concatenate([np.stack([x, y, one, zero, zero, zero, -x * u, -y * u], -1),
                             np.stack([zero, zero, zero, x, y, one, -x * v, -y * v], -1)], 1)  # (B, 8, 8)
    h = np.linalg.solve(system, np.concatenate([u, v], 1)[..., None])[..., 0]
    homography = np.concatenate([h, np.ones_like(h[:, :1])], 1).reshape(-1, 3, 3)
    to_unit = np.array([[2.0 / max(tw - 1, 1), 0.0, -1.0], [0.0, 2.0 / max(th - 1, 1), -1.0], [0.0, 0.0, 1.0]])
    sample = to_unit @ np.linalg.inv(homography)  # align_corners=True: texel centres 0..tw-1 -> -1..1
    return x0, y0, bh, bw, torch.from_numpy(sample).float()


def _memo(cache: dict, key, make, limit: int = 512):
    """`cache[key]`, made by `make()` on first use; emptied past `limit` entries (a run meets a few dozen keys)."""
    if key not in cache:
        if len(cache) > limit:
            cache.clear()
        cache[key] = make()
    return cache[key]


def _resize_aa(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The antialiased bilinear resize every texture shrink uses (and its weights are made from)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


_PIXELS: dict[tuple, torch.Tensor] = {}


def _grid(sample: torch.Tensor, h: int, w: int, dtype: torch.dtype, device) -> torch.Tensor:
    """grid_sample coordinates (B, h, w, 2) of a perspective warp into an (h, w) output: output pixel (x, y) samples
    the source at sample (x, y, 1) (what kornia's warp_perspective with align_corners=True computes, in ~40 small
    ops per call; here the grid is one batched matmul). Computed as (B, 2, h*w) planes, so that the perspective
    division runs on contiguous rows (the interleaved (x, y) layout's strided division cost twice the matmul), and
    returned as their (B, h, w, 2) view, which grid_sample reads as fast."""
    def pixels():  # the box pixels' homogeneous coordinates (1, 3, h*w)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype, device=device),
                                torch.arange(w, dtype=dtype, device=device), indexing="ij")
        return torch.stack([xs, ys, torch.ones_like(xs)], 0).reshape(1, 3, h * w)

    pts = sample.to(device, dtype) @ _memo(_PIXELS, (h, w, dtype, str(device)), pixels)  # (B, 3, h*w)
    z = pts[:, 2:]
    return pts[:, :2].div_(torch.where(z.abs() > 1e-8, z, torch.ones_like(z))).view(-1, 2, h, w).permute(0, 2, 3, 1)


_SHRINK_WEIGHTS: dict[tuple, torch.Tensor] = {}


def _shrink_weights(n: int, m: int, dtype: torch.dtype, device) -> torch.Tensor:
    """(n, m): the transpose of the antialiased bilinear resize n -> m along one axis, as a matrix (the resize of
    the n unit vectors). Cached: a training run meets a few dozen sizes."""
    def weights():  # n one-row images, row i the unit vector i, resized
        return _resize_aa(torch.eye(n, dtype=dtype, device=device).view(1, n, 1, n), (1, m)).view(n, m)

    return _memo(_SHRINK_WEIGHTS, (n, m, dtype, str(device)), weights)


class _Shrink(torch.autograd.Function):
    """F.interpolate(tex, size, bilinear, antialias=True) of a (1, C, h, w) texture; its backward is the separable
    resize's transpose as two small matmuls, Wy^T G Wx (~3x sooner on CPU than the antialiased kernel's backward)."""

    @staticmethod
    def forward(ctx, tex: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        ctx.shape = tex.shape
        return _resize_aa(tex, size)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        _, _, h, w = ctx.shape
        th, tw = grad.shape[-2:]
        wy, wx = _shrink_weights(h, th, grad.dtype, grad.device), _shrink_weights(w, tw, grad.dtype, grad.device)
        return (wy @ grad @ wx.T).view(ctx.shape), None


_FIXED_SHRINKS = WeakTensorKeyDictionary()  # tensor -> {(size, version): shrunk}


def _shrink_fixed(alpha: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`alpha` (1, h, w), which needs no gradient (a training mask), shrunk to `size` as _Shrink does; kept per
    tensor (while it lives and is not changed in place) and size, since a run shrinks the same mask every step."""
    return _memo(_FIXED_SHRINKS.setdefault(alpha, {}), (size, alpha._version), lambda: _resize_aa(alpha[None], size),
                 limit=64)


class _Scratch:
    """Frames the caller gives up ((B, 3, S, S)): the paste writes into them instead of copying them."""

    def __init__(self, frames: torch.Tensor, owned: bool):
        self.frames, self.owned = frames, owned
        self.alpha: torch.Tensor | None = None  # the pasted coverage (B, 1, bh, bw), set by _Paste.forward


def _box_views(frames: torch.Tensor, boxes: list[tuple[int, int]], bh: int, bw: int) -> list[torch.Tensor]:
    """Each sample's (C, bh, bw) box of `frames` (B, C, S, S) as a view, boxes given by top-left (y0, x0). Copying
    through views moves whole rows: a gather/scatter of the boxes' flat indices costs ~5x as much per step."""
    return [f[:, y:y + bh, x:x + bw] for f, (y, x) in zip(frames, boxes)]


class _Paste(torch.autograd.Function):
    """Bilinear perspective warp of premultiplied textures (colour (T, 3, th, tw), opacity (T, 1, th, tw)) into each
    sample's box (zeros outside the texture), composited over the scenes (`out = scene * (1 - a) + rgb` in the box),
    as one autograd node. A texture shared by the batch has T = 1 and is warped as a broadcast batch; per-sample
    textures have T = B. The backward reads the frames' gradient in the boxes only and writes the warp's gradient
    into one buffer (autograd's own graph of slices and concatenations zero-fills several box-sized buffers).
    Warping the shared texture as one tall image gives the same values, but its backward then runs on one thread:
    slower here."""

    @staticmethod
    def forward(ctx, rgb: torch.Tensor, alpha: torch.Tensor, scenes: _Scratch, grid: torch.Tensor,
                boxes: list[tuple[int, int]]) -> torch.Tensor:
        b = len(boxes)
        bh, bw = grid.shape[1:3]
        premult = torch.cat([rgb, alpha], 1)
        warped = F.grid_sample(premult.expand(b, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros",
                               align_corners=True)
        a, rgb_w = warped[:, 3:4], warped[:, :3]
        frames = scenes.frames if scenes.owned else scenes.frames.clone()
        views = _box_views(frames, boxes, bh, bw)
        scene_box = torch.stack(views)
        box = scene_box * (1 - a) + rgb_w
        for view, pasted in zip(views, box):
            view.copy_(pasted)
        ctx.save_for_backward(premult, grid, scene_box)
        ctx.boxes = boxes
        scenes.alpha = a  # the coverage, for EOTOutput.alpha (only built when asked for)
        return frames

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        premult, grid, scene_box = ctx.saved_tensors
        b, with_alpha = len(ctx.boxes), ctx.needs_input_grad[1]
        bh, bw = grid.shape[1:3]
        # a fixed opacity (a training mask) needs no gradient: then the warp's backward runs on the 3 RGB channels
        # only (each channel's gradient is computed alone, so the RGB values are the same either way)
        g_warp = grad.new_empty((b, 4 if with_alpha else 3, bh, bw))
        for g, view in zip(g_warp, _box_views(grad, ctx.boxes, bh, bw)):
            g[:3].copy_(view)
        if with_alpha:
            torch.sum(g_warp[:, :3] * scene_box, 1, out=g_warp[:, 3]).neg_()  # d box / d a = -scene
        source = premult if with_alpha else premult[:, :3]
        g_premult = torch.ops.aten.grid_sampler_2d_backward(g_warp, source.expand(b, -1, -1, -1), grid, 0, 0, True,
                                                            [True, False])[0]
        if premult.shape[0] == 1:  # summed sample by sample: torch's sum(0) rounds by memory position, so the
            g_shared = g_premult[0].clone()  # RGB sums would change with the channel count; here they do not
            for g in g_premult[1:]:
                g_shared += g
            g_premult = g_shared[None]
        return g_premult[:, :3], g_premult[:, 3:] if with_alpha else None, None, None, None


class Coverage:
    """The patch's coverage of each frame after warping (before camera effects), (B, 1, S, S), built on first use
    (training never reads it; it costs a frame-sized fill and copy). No gradient."""

    def __init__(self, a: torch.Tensor, boxes: list[tuple[int, int]], size: int):
        self._a, self._boxes, self._size, self._full = a, boxes, size, None

    def __call__(self) -> torch.Tensor:
        if self._full is None:
            b, _, bh, bw = self._a.shape
            self._full = self._a.new_zeros((b, 1, self._size, self._size))
            for view, a in zip(_box_views(self._full, self._boxes, bh, bw), self._a):
                view.copy_(a)
        return self._full


@dataclass
class EOTOutput:
    images: torch.Tensor   # (B, 3, S, S) transformed frames
    corners: torch.Tensor  # (B, 4, 2) where the patch corners landed, pixels (x, y)
    coverage: Coverage     # -> alpha
    params: EOTParams

    @property
    def alpha(self) -> torch.Tensor:
        """(B, 1, S, S) patch coverage after warping (before camera effects); no gradient."""
        return self.coverage()


_UNIFORM_BOUNDS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _uniforms(g: torch.Generator, n: int, spec: list[tuple[str, int, float, float]]) -> dict[str, torch.Tensor]:
    """U(lo, hi) draws of shape (n,) or (n, k) per (name, k, lo, hi), drawn in `spec`'s order from one rand call,
    sample-major within each name (what consecutive `lo + (hi - lo) * torch.rand((n, k))` calls give)."""
    widths = [n * k for _, k, _, _ in spec]
    def bounds():  # each draw's lo and hi - lo, per element
        lo = [a for (_, _, a, _), w in zip(spec, widths) for _ in range(w)]
        scale = [b - a for (_, _, a, b), w in zip(spec, widths) for _ in range(w)]
        return torch.tensor(lo, dtype=torch.float32), torch.tensor(scale, dtype=torch.float32)

    lo, scale = _memo(_UNIFORM_BOUNDS, (n, tuple(spec)), bounds, limit=64)
    values = lo + scale * torch.rand(sum(widths), generator=g)  # float32, as the scalar forms compute it
    return {name: part if k == 1 else part.view(n, k) for (name, k, _, _), part in zip(spec, values.split(widths))}


class EOT:
    """Draw and apply physical transformations; `config` is an EOTConfig, preset name or file."""

    def __init__(self, config: EOTConfig | str = "print", colour: ColourModel | None = None):
        self.config = load_config(config)
        self.colour = colour

    # -- sampling ----------------------------------------------------------------------------------------------------
    def sample(self, batch: int, size: int, area: float | torch.Tensor, generator: torch.Generator) -> EOTParams:
        c, g, n = self.config, generator, batch
        area_t = torch.as_tensor(area, dtype=torch.float32).expand(n).clone()
        if torch.any(area_t <= 0) or torch.any(area_t > MAX_AREA):
            raise PatchlabError(f"patch area fraction must lie in (0, {MAX_AREA}], got {area}")
        # (name, columns, lo, hi) of the uniform draws, in the order they have always been drawn: one torch.rand
        # for all of them gives the very same numbers (the CPU generator fills a tensor in order), in 2 ops
        # instead of ~60 small ones (lo + (hi - lo) * u per field, the same float32 arithmetic)
        before = [("area", 1, *c.area_scale), ("angle", 1, -c.rotation, c.rotation), ("tilt", 1, 0.0, c.tilt),
                  ("tilt_axis", 1, 0.0, math.pi)] + ([("position", 2, 0.0, 1.0)] if c.translate else []) + [
                  ("gain", 3, *c.colour_gain), ("offset", 3, *c.colour_offset),
                  ("brightness", 1, -c.brightness, c.brightness), ("contrast", 1, *c.contrast),
                  ("saturation", 1, *c.saturation), ("hue", 1, -c.hue, c.hue), ("gamma", 1, *c.gamma),
                  ("blur", 1, *c.blur_sigma), ("motion_on", 1, 0.0, 1.0), ("motion_angle", 1, 0.0, 180.0),
                  ("motion_direction", 1, -1.0, 1.0), ("noise_sigma", 1, 0.0, c.noise)]
        draws = _uniforms(g, n, before)
        noise = torch.randn((n, 3, size, size), generator=g) if c.noise > 0 else torch.zeros(n, 1, 1, 1)
        draws.update(_uniforms(g, n, [("jpeg_on", 1, 0.0, 1.0), ("jpeg_quality", 1, *c.jpeg_quality)]))
        return EOTParams(
            area=(area_t * draws["area"]).clamp(max=MAX_AREA), angle=draws["angle"], tilt=draws["tilt"],
            tilt_axis=draws["tilt_axis"],
            position=draws["position"] if c.translate else torch.full((n, 2), 0.5),
            gain=draws["gain"], offset=draws["offset"], brightness=draws["brightness"], contrast=draws["contrast"],
            saturation=draws["saturation"], hue=draws["hue"], gamma=draws["gamma"], blur=draws["blur"],
            motion_on=draws["motion_on"] < c.motion_blur_p, motion_angle=draws["motion_angle"],
            motion_direction=draws["motion_direction"], noise_sigma=draws["noise_sigma"], noise=noise,
            jpeg_on=draws["jpeg_on"] < c.jpeg_p, jpeg_quality=draws["jpeg_quality"])

    # -- geometry ----------------------------------------------------------------------------------------------------
    @staticmethod
    def corners(params: EOTParams, size: int, aspect: float = 1.0, fill: float = 1.0) -> torch.Tensor:
        """Where the patch corners land: (B, 4, 2) pixel coordinates. `fill` is the opaque share of the patch box,
        so the shape (not its box) covers `area` of the frame before tilt."""
        area_px = params.area * size * size / max(fill, 1e-6)
        h = torch.sqrt(area_px / aspect)
        w = aspect * h
        pts = _UNIT_SQUARE[None] * torch.stack([w, h], -1)[:, None] / 2  # (B, 4, 2)
        th = torch.deg2rad(params.angle)
        cos, sin = torch.cos(th), torch.sin(th)
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B, 2, 2)
        proj = pts @ rot.transpose(1, 2)
        if bool(params.tilt.any()):  # (an untilted batch would come out of it unchanged, to the bit)
            # out-of-plane tilt about the in-plane axis u (Rodrigues), then a pinhole camera at distance = focal
            t = torch.deg2rad(params.tilt)[:, None]
            ux, uy = torch.cos(params.tilt_axis)[:, None], torch.sin(params.tilt_axis)[:, None]
            x, y = proj[..., 0], proj[..., 1]
            dot = ux * x + uy * y
            cos_t = torch.cos(t)
            big_x = x * cos_t + ux * dot * (1 - cos_t)
            big_y = y * cos_t + uy * dot * (1 - cos_t)
            big_z = (ux * y - uy * x) * torch.sin(t)
            focal = FOCAL * size
            proj = torch.stack([big_x, big_y], -1) * (focal / (focal + big_z))[..., None]
        lo, hi = proj.min(1).values, proj.max(1).values
        room = (size - (hi - lo)).clamp(min=0)
        return proj + (-0.5 - lo + params.position * room)[:, None]

    def place(self, patch: torch.Tensor, scenes: torch.Tensor, params: EOTParams,
              whole: EOTParams | None = None, owned: bool = False,
              alpha: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, Coverage]:
        """Composite an RGBA patch (4, h, w) into scenes (B, 3, S, S): returns (frames, corners, coverage). When
        `params` are some rows of a larger batch's draws `whole`, the texture is shrunk and the warp boxes are sized
        as for the whole batch, so the rows render exactly as they would within it. `owned`: the caller gives
        `scenes` up (a scratch copy), so the patch is pasted into them in place, saving a copy of every frame.
        `alpha`: the opacity (1, h, w) of an RGB `patch`, given apart (a fixed mask then costs no gradient)."""
        b, _, size, size_w = scenes.shape
        if size != size_w:
            raise PatchlabError(f"EOT scenes must be square, got {size}x{size_w}")
        rgb, alpha = (patch[:3], patch[3:4]) if alpha is None else (patch, alpha)
        h, w = rgb.shape[-2:]
        fill = float(alpha.detach().mean().clamp(min=1e-3))
        corners = self.corners(params, size, aspect=w / h, fill=fill)
        # antialias: shrink the texture to about the largest on-screen side first (a one-level mipmap)
        sizing = corners if whole is None else self.corners(whole, size, aspect=w / h, fill=fill)
        edges = (sizing - sizing.roll(1, dims=1)).norm(dim=-1).max()
        target = int(math.ceil(float(edges) * 1.5))
        rgb_t, a_t = rgb[None], alpha[None]
        if max(h, w) > target >= 4:  # colour and opacity apart: the same values, and no gradient for a fixed mask
            shrunk = (max(2, round(h * target / max(h, w))), max(2, round(w * target / max(h, w))))
            rgb_t = _Shrink.apply(rgb_t, shrunk)
            a_t = _Shrink.apply(a_t, shrunk) if alpha.requires_grad else _shrink_fixed(alpha, shrunk)
        th, tw = rgb_t.shape[-2:]
        dev = scenes.device
        jitter = self.config.colour_gain != (1.0, 1.0) or self.config.colour_offset != (0.0, 0.0)
        if self.colour is not None:
            rgb_t = self.colour.to(dev)(rgb_t)
        if jitter:
            rgb_t = rgb_t * params.gain.to(dev)[..., None, None] + params.offset.to(dev)[..., None, None]
        if self.colour is not None or jitter:  # one texture per sample; else one for the batch, warped as a batch
            a_t = a_t.expand(b, -1, -1, -1)
        rgb_t = rgb_t.clamp(0, 1) * a_t  # premultiplied
        # the warp only fills a box around each quad (the same box size for the batch, placed per sample), then
        # the box is pasted: the patch covers a small part of the frame, and outside its quad the warp is zero anyway
        x0, y0, bh, bw, sample = _boxes_and_warps(corners, sizing, size, th, tw)
        grid = _grid(sample, bh, bw, rgb_t.dtype, dev)
        boxes = list(zip(y0.tolist(), x0.tolist()))
        scratch = _Scratch(scenes, owned and scenes.is_contiguous())
        frames = _Paste.apply(rgb_t, a_t, scratch, grid, boxes)
        return frames, corners, Coverage(scratch.alpha.detach(), boxes, size)

    # -- photometric and camera ----------------------------------------------------------------------------------------
    def photometric(self, x: torch.Tensor, p: EOTParams) -> torch.Tensor:
        """gamma, then contrast (about the frame mean), brightness, saturation and hue. The last four are one affine
        map per sample, M (c x + (1 - c) m + b) = c M x + ((1 - c) m + b) (M, a rotation and scaling of YIQ's
        chroma plane, keeps grey), so they run as one batched matmul with an offset: one pass instead of five."""
        c, dev = self.config, x.device
        if c.gamma != (1.0, 1.0):
            x = gamma(x, p.gamma.to(dev, x.dtype)[:, None, None, None])
        contrast, colour = c.contrast != (1.0, 1.0), c.saturation != (1.0, 1.0) or bool(c.hue)
        if not contrast and not c.brightness and not colour:
            return x  # gamma keeps [0, 1]: no clamp needed
        b, ch, h, w = x.shape
        mix = _colour_mix(p.saturation, p.hue).to(dev) if colour else torch.eye(3, device=dev).expand(b, 3, 3)
        shift = torch.zeros(b, device=dev)
        if contrast:
            scale = p.contrast.to(dev)
            mix = mix * scale[:, None, None]
            shift = (1 - scale) * x.mean((1, 2, 3))
        if c.brightness:
            shift = shift + p.brightness.to(dev)
        out = torch.baddbmm(shift[:, None, None].to(x.dtype), mix.to(x.dtype), x.reshape(b, ch, h * w))
        return F.hardtanh(out.view(b, ch, h, w), 0.0, 1.0)  # clamp(0, 1); its backward is one fused pass

    def camera(self, x: torch.Tensor, p: EOTParams) -> torch.Tensor:
        c, dev = self.config, x.device
        if c.blur_sigma[1] > 0:
            sigma = p.blur.to(dev).clamp(min=0.05)
            k = 2 * math.ceil(2.5 * c.blur_sigma[1]) + 1
            x = gaussian_blur(x, sigma, k)  # kornia's gaussian_blur2d, with a faster backward
        if c.motion_blur_p > 0 and bool(p.motion_on.any()):  # blur only the samples that drew it (like JPEG)
            # index_select, not x[idx]: the backward of advanced indexing is an accumulating index_put, ~5x slower
            idx = p.motion_on.nonzero()[:, 0]
            blurred = motion_blur(x.index_select(0, idx.to(dev)), c.motion_blur_kernel, p.motion_angle[idx],
                                  p.motion_direction[idx])
            x = x.index_copy(0, idx.to(dev), blurred)
        if c.noise > 0:  # blurs are convex combinations: only noise leaves [0, 1]
            x = add_noise(x, p.noise_sigma.to(dev, x.dtype)[:, None, None, None], p.noise.to(dev, x.dtype))
        if c.jpeg_p > 0 and bool(p.jpeg_on.any()):
            idx = p.jpeg_on.nonzero()[:, 0].to(dev)
            x = x.index_copy(0, idx, jpeg(x.index_select(0, idx), p.jpeg_quality[p.jpeg_on]))  # kornia's codec, ~4x faster
        return x

    # -- the whole thing -----------------------------------------------------------------------------------------------
    def __call__(self, patch: torch.Tensor, scenes: torch.Tensor, area: float | torch.Tensor,
                 generator: torch.Generator, params: EOTParams | None = None,
                 whole: EOTParams | None = None, owned: bool = False, alpha: torch.Tensor | None = None) -> EOTOutput:
        """Render `patch` (RGBA (4, h, w), or RGB (3, h, w) with its opacity `alpha` (1, h, w) or opaque) into every
        scene under fresh EOT draws (or `params`; `whole`, `owned`: see `place`)."""
        if patch.dim() != 3 or patch.shape[0] not in (3, 4) or (alpha is not None and patch.shape[0] != 3):
            raise PatchlabError(f"patch must be (3|4, H, W) (3 with alpha), got {tuple(patch.shape)}")
        if alpha is not None and (alpha.dim() != 3 or alpha.shape[0] != 1 or alpha.shape[1:] != patch.shape[1:]):
            raise PatchlabError(f"alpha must be (1, {patch.shape[1]}, {patch.shape[2]}), got {tuple(alpha.shape)}")
        if patch.shape[0] == 3 and alpha is None:
            alpha = torch.ones_like(patch[:1])
        patch = patch.to(scenes.device)
        if params is None:
            params = self.sample(len(scenes), scenes.shape[-1], area, generator)
        frames, corners, coverage = self.place(patch, scenes, params, whole, owned,
                                               None if alpha is None else alpha.to(scenes.device))
        frames = self.camera(self.photometric(frames, params), params)
        return EOTOutput(frames, corners, coverage, params)

    def clean(self, scenes: torch.Tensor, generator: torch.Generator, area: float = 0.1) -> torch.Tensor:
        """The same lighting and camera draws without a patch (for clean baselines)."""
        params = self.sample(len(scenes), scenes.shape[-1], area, generator)
        return self.camera(self.photometric(scenes, params), params)
