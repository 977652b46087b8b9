"""A differentiable printer->camera colour model, fitted by least squares from a printed-and-photographed chart.

Kinds:
- ``per_channel``: out_c = a_c * in_c + b_c (Athalye 2018's printer error model);
- ``affine``: out = M @ [r, g, b, 1] with a 3x4 matrix (cross-channel terms);
- ``root_polynomial``: degree-2 root-polynomial terms [r, g, b, sqrt(rg), sqrt(gb), sqrt(rb)] (Finlayson, Mackiewicz
  and Hurlbert 2015) plus a constant, because printed black is not camera black;
- ``identity``: no change (the digital preset).

``digital`` colours are what was sent to the printer and ``observed`` what the camera saw, both RGB in [0, 1].
An optional ``palette`` (K, 3) holds measured printable colours for the non-printability score.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from patchlab.errors import PatchlabError

KINDS = ("identity", "per_channel", "affine", "root_polynomial")
_EPS = 1e-6


def _features(rgb: torch.Tensor, kind: str) -> torch.Tensor:
    """(..., 3) colours -> (..., F) regression features for `kind`."""
    ones = torch.ones_like(rgb[..., :1])
    if kind in ("affine", "per_channel"):
        return torch.cat([rgb, ones], -1)
    if kind == "root_polynomial":
        r, g, b = rgb.clamp(min=0).unbind(-1)
        roots = [torch.sqrt(r * g + _EPS), torch.sqrt(g * b + _EPS), torch.sqrt(r * b + _EPS)]
        return torch.cat([rgb, torch.stack(roots, -1), ones], -1)
    raise PatchlabError(f"unknown colour model kind '{kind}'; choose from {', '.join(KINDS)}")


def _n_features(kind: str) -> int:
    return {"identity": 4, "per_channel": 4, "affine": 4, "root_polynomial": 7}[kind]


class ColourModel(nn.Module):
    """Maps digital RGB to camera-observed RGB; differentiable, works on (B, 3, H, W) or (N, 3)."""

    def __init__(self, kind: str = "identity", matrix: torch.Tensor | None = None,
                 palette: torch.Tensor | None = None, rmse: float | None = None):
        super().__init__()
        if kind not in KINDS:
            raise PatchlabError(f"unknown colour model kind '{kind}'; choose from {', '.join(KINDS)}")
        n = _n_features(kind)
        if matrix is None:
            matrix = torch.cat([torch.eye(3), torch.zeros(3, n - 3)], 1)
        matrix = torch.as_tensor(matrix, dtype=torch.float32)
        if tuple(matrix.shape) != (3, n):
            raise PatchlabError(f"colour model '{kind}' needs a 3x{n} matrix, got {tuple(matrix.shape)}")
        self.kind = kind
        self.rmse = rmse
        self.register_buffer("matrix", matrix.clone())
        if palette is not None:
            palette = torch.as_tensor(palette, dtype=torch.float32)
            if palette.dim() != 2 or palette.shape[1] != 3 or len(palette) == 0:
                raise PatchlabError(f"palette must be (K, 3) colours, got shape {tuple(palette.shape)}")
            if palette.min() < 0 or palette.max() > 1:
                raise PatchlabError("palette colours must lie in [0, 1]")
        self.register_buffer("palette", palette.clone() if palette is not None else None)

    # -- fitting ---------------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, digital: torch.Tensor, observed: torch.Tensor, kind: str = "affine",
            palette: torch.Tensor | None = None) -> "ColourModel":
        """Least-squares fit of observed ~ f(digital) on N paired colours (N, 3) in [0, 1]."""
        digital = torch.as_tensor(digital, dtype=torch.float64)
        observed = torch.as_tensor(observed, dtype=torch.float64)
        if digital.dim() != 2 or digital.shape[1] != 3 or digital.shape != observed.shape:
            raise PatchlabError(f"fit needs two (N, 3) colour arrays of the same shape, got "
                                f"{tuple(digital.shape)} and {tuple(observed.shape)}")
        if kind == "identity":
            return cls("identity", palette=palette)
        n = _n_features(kind)
        need = 2 if kind == "per_channel" else n
        if len(digital) < need:
            raise PatchlabError(f"a '{kind}' colour model needs at least {need} colour patches, got {len(digital)}")
        if kind == "per_channel":
            matrix = torch.zeros(3, 4, dtype=torch.float64)
            for c in range(3):
                a = torch.stack([digital[:, c], torch.ones_like(digital[:, c])], 1)
                sol = torch.linalg.lstsq(a, observed[:, c:c + 1]).solution[:, 0]
                matrix[c, c], matrix[c, 3] = sol[0], sol[1]
        else:
            feats = _features(digital, kind)
            matrix = torch.linalg.lstsq(feats, observed).solution.T  # (3, F)
        model = cls(kind, matrix.float(), palette=palette)
        with torch.no_grad():
            pred = model.apply_colours(digital.float())
        model.rmse = float((pred - observed.float()).pow(2).mean().sqrt())
        return model

    # -- applying --------------------------------------------------------------------------------------------------
    def apply_colours(self, rgb: torch.Tensor) -> torch.Tensor:
        """(..., 3) colours -> (..., 3) observed colours, clamped to [0, 1]."""
        if self.kind == "identity":
            return rgb
        feats = _features(rgb, self.kind)
        return (feats @ self.matrix.to(rgb.dtype).T).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, 3, H, W)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise PatchlabError(f"ColourModel expects (B, 3, H, W) images, got {tuple(x.shape)}")
        if self.kind == "identity":
            return x
        return self.apply_colours(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    # -- files -----------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"kind": self.kind, "matrix": self.matrix.tolist(),
                "palette": None if self.palette is None else self.palette.tolist(), "rmse": self.rmse}

    @classmethod
    def from_dict(cls, data: dict, source: str = "colour model") -> "ColourModel":
        if not isinstance(data, dict) or "kind" not in data:
            raise PatchlabError(f"{source}: not a colour model (needs 'kind' and 'matrix')")
        try:
            matrix = torch.tensor(data["matrix"], dtype=torch.float32) if data.get("matrix") is not None else None
            palette = torch.tensor(data["palette"], dtype=torch.float32) if data.get("palette") is not None else None
        except (TypeError, ValueError) as exc:
            raise PatchlabError(f"{source}: bad matrix or palette ({exc})") from None
        try:
            return cls(str(data["kind"]), matrix, palette, data.get("rmse"))
        except PatchlabError as exc:
            raise PatchlabError(f"{source}: {exc}") from None

    def to_json(self, path: str | Path, written_by: str = "patchlab calibrate fit") -> Path:
        """Write atomically, tagged as a colour model (the caller checks the path: patchlab.artifacts)."""
        from patchlab.artifacts import write_json

        return write_json(path, self.to_dict(), "colour-model", written_by)

    @classmethod
    def from_json(cls, path: str | Path) -> "ColourModel":
        from patchlab.artifacts import load_json

        return cls.from_dict(load_json(path, "colour model file"), str(path))

    def extra_repr(self) -> str:
        k = 0 if self.palette is None else len(self.palette)
        return f"kind={self.kind}, palette={k} colours, rmse={self.rmse}"
