"""Universal adversarial patch optimisation (Brown 2017) under EOT, with printability terms.

loss = -log p(target | EOT(patch, scene))  (or +log p(true class) untargeted), averaged over the batch and the models
       (or, with loss="success", a smooth top-1 success rate: mean of sigmoid(-margin / T) over the samples, where
       margin = target logit - best other logit; its gradient is largest near the decision boundary)
     + nps_weight * NPS(patch, palette) + max(tv_weight * TV(patch), tv_floor)        (Sharif 2016, Thys 2019)

Adam on the patch texture, clamped to [0, 1]; the patch gradient is cleared every step. All randomness comes from one
seeded CPU `torch.Generator` whose state is checkpointed, so `resume` replays an uninterrupted run exactly (CPU).
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from patchlab.errors import PatchlabError

ProgressFn = Callable[[int, int, dict], None]
CKPT_FORMAT = "patchlab-patch-checkpoint-1"
LOSSES = ("logprob", "success")


@dataclass
class PatchConfig:
    """Everything that determines a patch run (round-trips to JSON/YAML)."""

    images: str = ""
    models: list[str] = field(default_factory=lambda: ["efficientnet_lite0"])
    target: str | int | None = "toaster"  # None = untargeted
    area: float = 0.10
    shape: str = "square"
    patch_size: int = 256
    eot: str | dict = "print"
    colour: str | None = None             # ColourModel JSON: colour stage and NPS palette
    steps: int = 1000
    batch: int = 8
    lr: float = 0.03
    lr_final: float = 1.0                 # cosine decay to lr * lr_final (1.0 = constant: a run is a prefix of a longer one)
    decay_start: int = 0                  # the cosine decay runs from this step to `steps`
    nps_weight: float = 0.01
    tv_weight: float = 2.5
    tv_floor: float = 0.1
    holdout: float = 0.4
    split_seed: int = 0
    seed: int = 0
    checkpoint_every: int = 50
    eval_every: int = 0                   # held-out success every N steps (0 = never); for convergence logs
    eval_images: int = 64
    log_every: int = 10
    out: str | None = None                # patch PNG path; the checkpoint sits beside it
    device: str = "auto"
    loss: str = "logprob"                 # logprob (Brown 2017) or success (smooth top-1 success, for fine-tuning)
    loss_temperature: float = 2.0         # T of the success loss, in logits
    bf16: bool = False                    # bfloat16 autocast for the models' forward/backward (not faster on every CPU)
    init: str | None = None               # start from this patch PNG (e.g. the shipped one) instead of noise

    def __post_init__(self) -> None:
        from patchlab.errors import check_unit_interval

        if isinstance(self.models, str):
            self.models = [m.strip() for m in self.models.split(",") if m.strip()]
        if not self.models:
            raise PatchlabError("at least one --model is needed")
        check_unit_interval("area", self.area, allow_zero=False)
        if self.area > 0.5:
            raise PatchlabError(f"area must be at most 0.5 of the image, got {self.area}")
        for name in ("steps", "batch", "patch_size", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise PatchlabError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.patch_size < 8 or self.patch_size > 2048:
            raise PatchlabError(f"patch size must lie in [8, 2048] pixels, got {self.patch_size}")
        if not self.lr > 0:
            raise PatchlabError(f"lr must be positive, got {self.lr}")
        if self.loss not in LOSSES:
            raise PatchlabError(f"unknown loss '{self.loss}'; choose from {', '.join(LOSSES)}")
        if not self.loss_temperature > 0:
            raise PatchlabError(f"loss temperature must be positive, got {self.loss_temperature}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PatchConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PatchlabError(f"unknown patch setting '{unknown[0]}'")
        return cls(**data)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> "PatchConfig":
        import yaml

        return cls.from_dict(yaml.safe_load(text))

    def checkpoint_path(self) -> Path | None:
        return Path(self.out).with_suffix(".ckpt.pt") if self.out else None


@dataclass
class PatchResult:
    rgba: torch.Tensor          # (4, P, P) in [0, 1] on the CPU
    meta: dict                  # what goes into the sidecar
    history: list[dict]
    step: int
    stopped: bool = False       # True when the stop event ended the run early
    path: Path | None = None    # where the PNG was written


def _resolve_target(target) -> tuple[int | None, str | None]:
    if target is None or (isinstance(target, str) and target.strip().lower() in ("", "none", "untargeted")):
        return None, None
    from patchlab.data import imagenet_classes

    classes = imagenet_classes()
    idx = classes.lookup(int(target) if isinstance(target, str) and target.strip().isdigit() else target)
    return idx, classes.names[idx]


SCHEDULE_KEYS = ("steps", "lr_final", "decay_start")
UNKEYED = (*SCHEDULE_KEYS, "out", "checkpoint_every", "log_every", "device")  # free to change on --resume


def _config_key(cfg: PatchConfig) -> str:
    """The settings a resumed run must share (everything but the schedule's length and decay, output and logging)."""
    d = cfg.to_dict()
    for k in UNKEYED:
        d.pop(k, None)
    return json.dumps(d, sort_keys=True, default=str)


def _same_settings(saved_key: str, cfg: PatchConfig) -> bool:
    saved = {k: v for k, v in json.loads(saved_key).items() if k not in UNKEYED}
    for f in fields(PatchConfig):  # a checkpoint from before a setting existed ran with its default
        if f.name not in UNKEYED and f.default is not MISSING:
            saved.setdefault(f.name, f.default)
    return saved == json.loads(_config_key(cfg))


def _palette(colour) -> torch.Tensor:
    from patchlab.patch.losses import default_palette

    if colour is not None and colour.palette is not None:
        return colour.palette
    return default_palette()


def _lr_at(cfg: PatchConfig | dict, step: int) -> float:
    get = cfg.get if isinstance(cfg, dict) else lambda k, d=None: getattr(cfg, k, d)
    lr, final, start, steps = get("lr"), get("lr_final", 1.0), get("decay_start", 0) or 0, get("steps")
    if final == 1.0 or step < start:
        return lr
    frac = (step - start) / max(steps - 1 - start, 1)
    return lr * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _adv_loss(models, frames: torch.Tensor, target: int | None, labels: torch.Tensor | None, bf16: bool = False,
              kind: str = "logprob", temperature: float = 2.0):
    """Mean over models of the adversarial loss; also the mean target probability and batch success."""
    total, prob, succ = 0.0, 0.0, 0.0
    for m in models:
        x = frames if frames.shape[-1] == m.input_size else F.interpolate(
            frames, size=(m.input_size, m.input_size), mode="bilinear", align_corners=False, antialias=True)
        with torch.autocast(frames.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = m(x)
        logp = logits.float().log_softmax(-1)
        wanted = torch.full((len(logp),), target, device=logp.device) if target is not None else labels.to(logp.device)
        picked = logp.gather(1, wanted[:, None])[:, 0]
        if kind == "success":  # margin of the wanted class over the best other one (a difference of logits)
            others = logp.scatter(1, wanted[:, None], float("-inf")).amax(1)
            margin = picked - others if target is not None else others - picked
            total = total + torch.sigmoid(-margin / temperature).mean()
        else:
            total = total + (-picked.mean() if target is not None else picked.mean())
        prob += float(picked.detach().exp().mean())
        hit = logp.detach().argmax(-1) == wanted
        succ += float((hit if target is not None else ~hit).float().mean())
    n = len(models)
    return total / n, prob / n, succ / n


def _save_checkpoint(path: Path, state: dict) -> None:
    from patchlab.artifacts import save_torch

    save_torch(state, path)


def check_patch_outputs(cfg: PatchConfig, resume: bool = False, force: bool = False) -> None:
    """Before any work: the PNG, its sidecar and the checkpoint may only replace this command's own earlier
    outputs, and only with `force` (or, for a resumed run, the outputs of the run it continues)."""
    from patchlab.artifacts import OutputExists, check_outputs
    from patchlab.patch.io import WRITER, sidecar_path

    if not cfg.out:
        return
    out = Path(cfg.out)
    check_outputs({out: "patch", sidecar_path(out): "patch-sidecar"}, WRITER, force=force or resume)
    ckpt = cfg.checkpoint_path()
    if resume or ckpt is None or not ckpt.exists():
        return
    check_outputs({ckpt: "patch-checkpoint"}, WRITER, force=True)  # another kind of file there is never replaced
    if not force:
        raise OutputExists(f"{ckpt} holds the checkpoint of an earlier run for {out}: <resume> continues it, <force> "
                           "starts over", ckpt, same=True)


def train_patch(config: PatchConfig | dict, progress: ProgressFn | None = None,
                stop: threading.Event | None = None, resume: bool = False, models=None,
                force: bool = False) -> PatchResult:
    """Optimise a universal patch. Checkpoints every `checkpoint_every` steps beside `config.out`; `resume=True`
    continues from that checkpoint. A set `stop` event (or Ctrl-C) saves a checkpoint and ends the run early.
    `models` may pass already-loaded classifiers (same names as config.models) to skip loading. Existing outputs at
    `config.out` are replaced only with `force` (see `check_patch_outputs`)."""
    import patchlab
    from patchlab.eot import EOT, ColourModel, load_config
    from patchlab.models import load_model, resolve_device
    from patchlab.patch.data import load_scenes, split_scenes, to_float
    from patchlab.patch.losses import non_printability, total_variation
    from patchlab.patch.shapes import make_mask

    cfg = config if isinstance(config, PatchConfig) else PatchConfig.from_dict(config)
    if not cfg.images:
        raise PatchlabError("patch training needs an image folder (--images DIR)")
    check_patch_outputs(cfg, resume, force)
    device = resolve_device(cfg.device)
    target, target_name = _resolve_target(cfg.target)
    eot_cfg = load_config(cfg.eot)
    colour = ColourModel.from_json(cfg.colour) if cfg.colour else None
    eot = EOT(eot_cfg, colour)
    eval_eot = EOT(eot_cfg.replace(area_scale=(1.0, 1.0)), colour)  # held-out checks at exactly the nominal area
    mask = make_mask(cfg.shape, cfg.patch_size).to(device)
    palette = _palette(colour).to(device)
    if models is None:
        models = [load_model(name, device) for name in cfg.models]
    size = max(m.input_size for m in models)

    split = split_scenes(cfg.images, cfg.holdout, cfg.split_seed, exclude_label=target)
    bank = load_scenes(split.train, size, progress=progress)
    labels = None
    if target is None:  # untargeted: push away from the true label, or from the clean prediction when unlabelled
        if split.labels is not None:
            labels = torch.tensor([split.labels[p.name] for p in split.train])
        else:
            with torch.no_grad():
                labels = torch.cat([models[0].predict(F.interpolate(to_float(bank[i:i + 32], device),
                                    size=models[0].input_size, mode="bilinear", antialias=True)).argmax(-1).cpu()
                                    for i in range(0, len(bank), 32)])
    eval_bank = None
    if cfg.eval_every and split.heldout and target is not None:  # held-out monitoring is for targeted runs
        eval_bank = load_scenes(split.heldout[:cfg.eval_images], size)

    gen = torch.Generator().manual_seed(cfg.seed)
    texture = torch.rand((3, cfg.patch_size, cfg.patch_size), generator=gen)
    if cfg.init:
        from patchlab.patch.io import load_patch

        start_rgba, _ = load_patch(cfg.init)
        texture = F.interpolate(start_rgba[None, :3].float(), size=(cfg.patch_size, cfg.patch_size), mode="bilinear",
                                align_corners=False, antialias=True)[0].clamp(0, 1)
    texture = texture.to(device).requires_grad_(True)
    opt = torch.optim.Adam([texture], lr=cfg.lr)
    start_step, history, elapsed = 0, [], 0.0
    ckpt = cfg.checkpoint_path()
    if resume:
        if ckpt is None or not ckpt.is_file():
            raise PatchlabError(f"--resume: no checkpoint at {ckpt}")
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if state.get("format") != CKPT_FORMAT:
            raise PatchlabError(f"{ckpt}: not a patchlab patch checkpoint")
        if not _same_settings(state["config_key"], cfg):
            raise PatchlabError(f"{ckpt}: was made with different settings; only --steps and the lr decay may "
                                "change on --resume")
        saved_schedule = json.loads(state.get("schedule", "{}")) or {"lr": cfg.lr, "lr_final": 1.0, "decay_start": 0,
                                                                      "steps": int(state["step"])}
        if any(abs(_lr_at(saved_schedule, k) - _lr_at(cfg, k)) > 1e-12 for k in range(int(state["step"]))):
            raise PatchlabError(f"{ckpt}: the new lr schedule differs for steps already taken; start the decay "
                                f"at or after step {int(state['step'])}")
        with torch.no_grad():
            texture.copy_(state["texture"].to(device))
        opt.load_state_dict(state["adam"])
        gen.set_state(state["rng"])
        start_step, history, elapsed = int(state["step"]), json.loads(state["history"]), float(state["elapsed"])

    def snapshot(step: int) -> dict:
        return {"format": CKPT_FORMAT, "step": step, "texture": texture.detach().cpu().clone(),
                "adam": opt.state_dict(), "rng": gen.get_state(), "config_key": _config_key(cfg),
                "schedule": json.dumps({k: getattr(cfg, k) for k in ("lr", *SCHEDULE_KEYS)}),
                "history": json.dumps(history), "elapsed": elapsed}

    def heldout_success(step: int) -> float:
        g = torch.Generator().manual_seed(cfg.seed + 7919)
        hits, total = 0, 0
        rgba = torch.cat([texture.detach(), mask], 0)
        with torch.no_grad():
            for i in range(0, len(eval_bank), 32):
                scenes = to_float(eval_bank[i:i + 32], device)
                frames = eval_eot(rgba, scenes, cfg.area, g).images
                for m in models[:1]:
                    x = frames if size == m.input_size else F.interpolate(frames, size=m.input_size, mode="bilinear",
                                                                          antialias=True)
                    pred = m(x).argmax(-1).cpu()
                    hits += int((pred == target).sum())
                    total += len(pred)
        return hits / max(total, 1)

    stopped = False
    step = start_step
    t_last = time.perf_counter()
    try:
        while step < cfg.steps:
            if stop is not None and stop.is_set():
                stopped = True
                break
            for group in opt.param_groups:
                group["lr"] = _lr_at(cfg, step)
            idx = torch.randint(0, len(bank), (cfg.batch,), generator=gen)
            scenes = to_float(bank[idx], device)
            patch = torch.cat([texture, mask], 0)
            out = eot(patch, scenes, cfg.area, gen)
            adv, prob, succ = _adv_loss(models, out.images, target, labels[idx] if labels is not None else None, cfg.bf16,
                                         cfg.loss, cfg.loss_temperature)
            nps = non_printability(texture, palette, mask)
            tv = total_variation(texture, mask)
            loss = adv + cfg.nps_weight * nps + torch.clamp(cfg.tv_weight * tv, min=cfg.tv_floor)
            opt.zero_grad(set_to_none=True)  # clear the patch gradient every step (ART's bug)
            loss.backward()
            opt.step()
            with torch.no_grad():
                texture.clamp_(0, 1)
            step += 1
            now = time.perf_counter()
            elapsed += now - t_last
            t_last = now
            metrics = {"loss": float(loss.detach()), "target_prob": prob, "batch_success": succ, "nps": float(nps.detach()),
                       "tv": float(tv.detach())}
            if step % cfg.log_every == 0 or step == cfg.steps:
                history.append({"step": step, "seconds": round(elapsed, 2), **{k: round(v, 5) for k, v in metrics.items()}})
            if eval_bank is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                rate = heldout_success(step)
                history.append({"step": step, "seconds": round(elapsed, 2), "heldout_success": rate,
                                "heldout_n": len(eval_bank)})
                metrics["heldout_success"] = rate
                t_last = time.perf_counter()  # evaluation time is not training time
            if ckpt is not None and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
                _save_checkpoint(ckpt, snapshot(step))
            if progress:
                progress(step, cfg.steps, metrics)
    except KeyboardInterrupt:
        if ckpt is not None:
            _save_checkpoint(ckpt, snapshot(step))
        raise
    if stopped and ckpt is not None:
        _save_checkpoint(ckpt, snapshot(step))

    rgba = torch.cat([texture.detach(), mask], 0).cpu()
    meta = {
        "patchlab_version": patchlab.__version__, "kind": "adversarial_patch",
        "target": target, "target_name": target_name, "models": [m.name for m in models],
        "area": cfg.area, "shape": cfg.shape, "patch_size": cfg.patch_size,
        "eot": eot_cfg.to_dict(), "colour": colour.to_dict() if colour else None,
        "seed": cfg.seed, "steps": step, "config": cfg.to_dict(),
        "images": str(cfg.images), "split": {"holdout": cfg.holdout, "split_seed": cfg.split_seed,
                                             "train_n": len(split.train), "heldout_n": len(split.heldout)},
        "train_images": [p.name for p in split.train],
        "train_seconds": round(elapsed, 1), "device": str(device), "torch": torch.__version__,
        "history": history,
    }
    result = PatchResult(rgba, meta, history, step, stopped)
    if cfg.out and not stopped:
        from patchlab.patch.io import save_patch

        result.path = save_patch(cfg.out, rgba[:3], rgba[3:], meta)
    return result
