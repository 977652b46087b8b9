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
import torch
import torch.nn.functional as F

from patchlab.errors import PatchlabError
from patchlab.patch.losses import Printability
from patchlab.progress import ProgressFn
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
            raise PatchlabError("at least one model is needed (models=)")
        check_unit_interval("area", self.area, allow_zero=False)
        from patchlab.eot import MAX_PATCH_AREA

        if self.area > MAX_PATCH_AREA:
            raise PatchlabError(f"area= must be at most {MAX_PATCH_AREA} of the image, got {self.area}")
        for name in ("steps", "batch", "patch_size", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise PatchlabError(f"{name}= must be at least 1, got {getattr(self, name)}")
        if self.patch_size < 8 or self.patch_size > 2048:
            raise PatchlabError(f"patch_size= must lie in [8, 2048] pixels, got {self.patch_size}")
        if not self.lr > 0:
            raise PatchlabError(f"lr= must be positive, got {self.lr}")
        if self.loss not in LOSSES:
            raise PatchlabError(f"unknown loss= '{self.loss}'; choose from {', '.join(LOSSES)}")
        if not self.loss_temperature > 0:
            raise PatchlabError(f"loss_temperature= must be positive, got {self.loss_temperature}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PatchConfig":
        from patchlab.registry import check_known

        check_known(data, (f.name for f in fields(cls)), "patch setting")
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
    rank: int = 0               # this process's rank in a data-parallel run (only rank 0 writes the files)


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


def _at_input_size(frames: torch.Tensor, model) -> torch.Tensor:
    """Frames rendered at the ensemble's largest input size, resized for `model` when it takes another size."""
    if frames.shape[-1] == model.input_size:
        return frames
    return F.interpolate(frames, size=(model.input_size, model.input_size), mode="bilinear", align_corners=False,
                         antialias=True)


def _adv_loss(models, frames: torch.Tensor, target: int | None, labels: torch.Tensor | None, bf16: bool = False,
              kind: str = "logprob", temperature: float = 2.0):
    """Mean over models of the adversarial loss; also the mean target probability and batch success."""
    total, prob, succ = 0.0, 0.0, 0.0
    for m in models:
        x = _at_input_size(frames, m)
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


# -- checkpoint files (the trainer's state_dict on disk) -------------------------------------------------------------
def save_checkpoint(path: Path, state: dict) -> None:
    """Write a trainer's `state_dict()` atomically (tensors, numbers and strings only: it loads with weights_only)."""
    from patchlab.artifacts import save_torch

    save_torch(state, path)


def read_checkpoint(path: Path | None) -> dict:
    """A patch checkpoint's state, loaded with weights_only=True; one-line errors for a missing or foreign file."""
    if path is None or not path.is_file():
        raise PatchlabError(f"resume=True but there is no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CKPT_FORMAT:
        raise PatchlabError(f"{path}: not a patchlab patch checkpoint")
    return state


# -- the trainer ------------------------------------------------------------------------------------------------------
EVAL_CHUNK = 32             # scenes per no-grad forward pass (labelling the bank, the held-out monitor): bounds memory
HELDOUT_SEED_OFFSET = 7919  # the monitor's EOT draws come from seed + this prime: the same draws at every check, and
                            # apart from the training draws (which come from seed itself)


class PatchTrainer:
    """One patch run: `prepare` (a chain of `_prepare_*` steps), `step` (one optimiser step), `heldout_success`,
    `state_dict` / `load_state_dict` (what a checkpoint holds), `meta` (the sidecar) and `fit` (the loop: logging,
    held-out monitoring, checkpoints). Checkpoint files are read and written apart, by `read_checkpoint` and
    `save_checkpoint`.

        trainer = PatchTrainer(config, models=models).prepare()
        while trainer.steps_taken < config.steps:
            metrics = trainer.step()
        rgba, meta = trainer.rgba(), trainer.meta()

    `ranks` (a `patchlab.patch.distributed.RankGroup`) makes it one process of a data-parallel run: every rank draws
    the whole batch from the shared generator and renders its slice; the gradient is averaged over the ranks."""

    def __init__(self, config: PatchConfig | dict, models=None, ranks=None):
        from patchlab.patch.distributed import RankGroup

        self.cfg = config if isinstance(config, PatchConfig) else PatchConfig.from_dict(config)
        self.models = models
        self.ranks = ranks if ranks is not None else RankGroup()
        self.checkpoint = self.cfg.checkpoint_path()
        self.steps_taken, self.history, self.elapsed = 0, [], 0.0
        self.stop_agreed = False  # a data-parallel run stops when any rank's stop event was set during a step
        self._rng_at_step = None  # the generators' states at the start of a step in progress
        self._model_gens: list[torch.Generator] | None = None  # the models' own generators (found on first use)

    # -- prepare: ranks -> outputs -> transforms -> models -> scenes -> patch -> shared scenes -> checkpoint --------
    def prepare(self, resume: bool = False, force: bool = False, progress: ProgressFn | None = None) -> "PatchTrainer":
        """Everything before the first step. `resume` continues from the checkpoint beside `config.out`; outputs
        there are replaced only with `force`. `progress` reports the loading of the scene images."""
        ranks = self.ranks
        if ranks.world > 1:
            self._prepare_ranks()
        if not self.cfg.images:
            raise PatchlabError("patch training needs an image folder (images=)")
        with ranks.all_or_none("checking the outputs"):
            if ranks.is_main:  # rank 0 owns the files
                check_patch_outputs(self.cfg, resume, force)
        with ranks.all_or_none("preparing"):
            self._prepare_transforms()
            self._prepare_models()
            self._prepare_scenes(progress)
            self._prepare_patch()
        if ranks.world > 1:
            self._share_scenes()
        state = None
        if resume:
            with ranks.all_or_none("reading the checkpoint"):
                state = read_checkpoint(self.checkpoint) if ranks.is_main else None
        if ranks.world > 1:  # every rank starts from rank 0's state, also where only rank 0 can read the checkpoint
            state = ranks.broadcast(_to_cpu(state if resume else self.state_dict()))
        if state is not None:
            with ranks.all_or_none("resuming"):
                self.load_state_dict(state)
        return self

    def _prepare_transforms(self) -> None:
        from patchlab.eot import EOT, ColourModel, load_config
        from patchlab.models import resolve_device
        from patchlab.patch.shapes import make_mask

        cfg = self.cfg
        self.device = self.ranks.device or resolve_device(cfg.device)
        self.target, self.target_name = _resolve_target(cfg.target)
        self.eot_cfg = load_config(cfg.eot)
        self.colour = ColourModel.from_json(cfg.colour) if cfg.colour else None
        self.eot = EOT(self.eot_cfg, self.colour)
        self.eval_eot = EOT(self.eot_cfg.replace(area_scale=(1.0, 1.0)), self.colour)  # exactly the nominal area
        self.mask = make_mask(cfg.shape, cfg.patch_size).to(self.device)
        self.palette = _palette(self.colour).to(self.device)
        self.printability = Printability(self.palette, self.mask)  # palette grid and mask weights, analysed once

    def _prepare_models(self) -> None:
        from patchlab.models import load_model

        if self.models is None:
            self.models = [load_model(name, self.device) for name in self.cfg.models]
        self.size = max(m.input_size for m in self.models)  # frames are rendered once, at the largest input size

    def _prepare_scenes(self, progress: ProgressFn | None) -> None:
        from patchlab.patch.data import load_scenes, split_scenes

        cfg = self.cfg
        self.split = split_scenes(cfg.images, cfg.holdout, cfg.split_seed, exclude_label=self.target)
        self.bank = load_scenes(self.split.train, self.size, progress=progress)
        self.labels = None
        if self.target is None:  # untargeted: push away from the true label, or from the clean prediction
            if self.split.labels is not None:
                self.labels = torch.tensor([self.split.labels[p.name] for p in self.split.train])
            else:
                self.labels = self._predicted_labels()
        self.eval_bank = None
        if cfg.eval_every and self.split.heldout and self.target is not None and self.ranks.is_main:
            self.eval_bank = load_scenes(self.split.heldout[:cfg.eval_images], self.size)  # targeted runs only

    def _predicted_labels(self) -> torch.Tensor:
        from patchlab.patch.data import to_float

        judge = self.models[0]
        with torch.no_grad():
            return torch.cat([judge.predict(_at_input_size(to_float(self.bank[i:i + EVAL_CHUNK], self.device), judge))
                              .argmax(-1).cpu() for i in range(0, len(self.bank), EVAL_CHUNK)])

    def _prepare_patch(self) -> None:
        cfg = self.cfg
        self.gen = torch.Generator().manual_seed(cfg.seed)  # every draw of the run comes from here (CPU: replayable)
        texture = torch.rand((3, cfg.patch_size, cfg.patch_size), generator=self.gen)
        if cfg.init:
            from patchlab.patch.io import load_patch

            start_rgba, _ = load_patch(cfg.init)
            texture = F.interpolate(start_rgba[None, :3].float(), size=(cfg.patch_size, cfg.patch_size),
                                    mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)
        self.texture = texture.to(self.device).requires_grad_(True)
        self.opt = torch.optim.Adam([self.texture], lr=cfg.lr)

    def _prepare_ranks(self) -> None:
        """Data parallel, before any work: the ranks must run the same settings, and each needs a sample per step.
        Every rank decides from the same gathered facts, so an error never leaves one rank waiting for the others."""
        ranks = self.ranks
        settings = json.dumps({k: v for k, v in self.cfg.to_dict().items() if k != "device"}, sort_keys=True,
                              default=str)
        differs = [rank for rank, theirs in enumerate(ranks.gather(settings)) if theirs != settings]
        if differs:
            raise PatchlabError(f"rank {differs[0]} runs other settings than rank {ranks.rank}: start every process "
                                "with the same command")
        if self.cfg.batch < ranks.world:
            raise PatchlabError(f"batch={self.cfg.batch} is smaller than the {ranks.world} processes: each renders at "
                                "least one sample per step")

    def _share_scenes(self) -> None:
        """Data parallel: the same training scenes on every rank (each machine reads its own copy of the folder)."""
        import hashlib

        ranks = self.ranks
        self.labels = ranks.broadcast(self.labels)  # predicted labels: rank 0's, should hardware differ at a tie
        digest = hashlib.blake2b(self.bank.numpy().tobytes(), digest_size=16)
        digest.update(json.dumps([p.name for p in self.split.train]).encode())
        differs = [rank for rank, theirs in enumerate(ranks.gather(digest.hexdigest())) if theirs != digest.hexdigest()]
        if differs:
            raise PatchlabError(f"rank {differs[0]} has other training images than rank {ranks.rank} in "
                                f"{self.cfg.images}: give every machine the same folder")

    # -- one step ------------------------------------------------------------------------------------------------------
    def step(self, stop: threading.Event | None = None) -> dict:
        """One Adam step on a fresh batch of scenes under fresh EOT draws; returns the step's metrics (the whole
        batch's, also on a data-parallel rank). A set `stop` ends a data-parallel run after this step, on every rank."""
        from patchlab.patch.data import to_float
        cfg, ranks = self.cfg, self.ranks
        for group in self.opt.param_groups:
            group["lr"] = _lr_at(cfg, self.steps_taken)
        # the whole batch's draws come from the shared generator on every rank; a rank renders only its rows
        self._rng_at_step = self._rng_states()  # what a checkpoint written mid-step (Ctrl-C) saves
        idx = torch.randint(0, len(self.bank), (cfg.batch,), generator=self.gen)
        params = self.eot.sample(cfg.batch, self.size, cfg.area, self.gen)
        rows = ranks.rows(cfg.batch)
        mine = params if ranks.world == 1 else params.select(rows)
        scenes = to_float(self.bank.index_select(0, idx[rows]), self.device)
        # the scenes are this step's own float copy; the mask is given apart: it needs no gradient
        out = self.eot(self.texture, scenes, cfg.area, self.gen, params=mine, whole=None if mine is params else params,
                       owned=True, alpha=self.mask)
        labels = self.labels[idx[rows]] if self.labels is not None else None
        adv, prob, succ = _adv_loss(self.models, out.images, self.target, labels, cfg.bf16, cfg.loss,
                                    cfg.loss_temperature)
        share = ranks.share(cfg.batch)  # this rank's rows / the batch
        if ranks.world > 1:  # scaled so that the ranks' average gradient is the whole batch's
            adv = adv * (share * ranks.world)
        nps, tv = self.printability.nps(self.texture), self.printability.tv(self.texture)
        loss = adv + cfg.nps_weight * nps + torch.clamp(cfg.tv_weight * tv, min=cfg.tv_floor)
        self.opt.zero_grad(set_to_none=True)  # clear the patch gradient every step (ART's bug)
        loss.backward()
        metrics = {"loss": float(loss.detach()), "target_prob": prob, "batch_success": succ,
                   "nps": float(nps.detach()), "tv": float(tv.detach())}
        if ranks.world > 1:  # one all-reduce: the averaged gradient, the batch's metrics and the stop vote
            regulariser = metrics["loss"] - float(adv.detach())
            batch_adv, prob, succ, votes = ranks.average_gradient(
                self.texture.grad, [float(adv.detach()) / ranks.world, prob * share, succ * share,
                                    float(stop is not None and stop.is_set())])
            metrics.update(loss=batch_adv + regulariser, target_prob=prob, batch_success=succ)
            self.stop_agreed = votes > 0
        self.opt.step()
        with torch.no_grad():
            self.texture.clamp_(0, 1)
        self.steps_taken += 1
        self._rng_at_step = None
        return metrics

    def heldout_success(self) -> float:
        """Targeted top-1 success of the current patch on the held-out monitor scenes (the first `eval_images` of the
        held-out split), judged by the first model only, under the EOT preset at exactly the nominal area with the
        same draws at every check (seed + HELDOUT_SEED_OFFSET). A convergence log, not the evaluation."""
        from patchlab.patch.data import to_float

        g = torch.Generator().manual_seed(self.cfg.seed + HELDOUT_SEED_OFFSET)
        judge = self.models[0]
        rgba = torch.cat([self.texture.detach(), self.mask], 0)
        hits, total = 0, 0
        with torch.no_grad():
            for i in range(0, len(self.eval_bank), EVAL_CHUNK):
                scenes = to_float(self.eval_bank[i:i + EVAL_CHUNK], self.device)
                frames = self.eval_eot(rgba, scenes, self.cfg.area, g).images
                pred = judge(_at_input_size(frames, judge)).argmax(-1).cpu()
                hits += int((pred == self.target).sum())
                total += len(pred)
        return hits / max(total, 1)

    # -- state ---------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs (the checkpoint's content): patch, Adam, generator, step, logs, settings."""
        cfg = self.cfg
        rng, model_rng = self._rng_at_step if self._rng_at_step is not None else self._rng_states()
        return {"format": CKPT_FORMAT, "step": self.steps_taken, "texture": self.texture.detach().cpu().clone(),
                "adam": self.opt.state_dict(), "rng": rng, "config_key": _config_key(cfg),
                "schedule": json.dumps({k: getattr(cfg, k) for k in ("lr", *SCHEDULE_KEYS)}),
                "history": json.dumps(self.history), "elapsed": self.elapsed, "model_rng": model_rng}

    def _rng_states(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The trainer's and the models' generator states. A step interrupted part-way (Ctrl-C) has already drawn
        from them, so a checkpoint written then saves their states from the step's start: those of the last whole
        step, which a resumed run must continue from."""
        if self._model_gens is None:
            self._model_gens = self._model_generators()
        return self.gen.get_state(), [g.get_state() for g in self._model_gens]

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state`, refusing one made with other settings or whose lr schedule the config rewrites."""
        cfg, where = self.cfg, self.checkpoint or "checkpoint"
        if not _same_settings(state["config_key"], cfg):
            raise PatchlabError(f"{where}: was made with different settings; only steps, lr_final and decay_start may "
                                "change on resume")
        taken = int(state["step"])
        saved_schedule = json.loads(state.get("schedule", "{}")) or {"lr": cfg.lr, "lr_final": 1.0, "decay_start": 0,
                                                                      "steps": taken}
        if any(abs(_lr_at(saved_schedule, k) - _lr_at(cfg, k)) > 1e-12 for k in range(taken)):
            raise PatchlabError(f"{where}: the new lr schedule differs for steps already taken; start the decay at or "
                                f"after step {taken}")
        with torch.no_grad():
            self.texture.copy_(state["texture"].to(self.device))
        self.opt.load_state_dict(state["adam"])
        self.gen.set_state(state["rng"])
        generators = self._model_generators()
        saved = state.get("model_rng", [])  # older checkpoints carry none: such a resume is valid, not bit-identical
        if saved and len(saved) != len(generators):
            raise PatchlabError(f"{where}: was made with {len(saved)} randomized model layers, these models have "
                                f"{len(generators)}")
        for g, rng in zip(generators, saved):
            g.set_state(rng)
        self.steps_taken, self.history, self.elapsed = taken, json.loads(state["history"]), float(state["elapsed"])

    def _model_generators(self) -> list[torch.Generator]:
        """The seeded generators of randomized layers inside the models (an adaptive patch's random PatchCleanser
        masks, say): checkpointed beside the trainer's own, so a resumed run draws what an uninterrupted one would."""
        return [m.generator for model in self.models for m in model.modules()
                if isinstance(getattr(m, "generator", None), torch.Generator)]

    def rgba(self) -> torch.Tensor:
        return torch.cat([self.texture.detach(), self.mask], 0).cpu()

    def meta(self) -> dict:
        """The sidecar: what was trained, how, on which images, and the training log."""
        import patchlab

        cfg, split = self.cfg, self.split
        meta = {
            "patchlab_version": patchlab.__version__, "kind": "adversarial_patch",
            "target": self.target, "target_name": self.target_name, "models": [m.name for m in self.models],
            "area": cfg.area, "shape": cfg.shape, "patch_size": cfg.patch_size,
            "eot": self.eot_cfg.to_dict(), "colour": self.colour.to_dict() if self.colour else None,
            "seed": cfg.seed, "steps": self.steps_taken, "config": cfg.to_dict(),
            "images": str(cfg.images), "split": {"holdout": cfg.holdout, "split_seed": cfg.split_seed,
                                                 "train_n": len(split.train), "heldout_n": len(split.heldout)},
            "train_images": [p.name for p in split.train],
            "train_seconds": round(self.elapsed, 1), "device": str(self.device), "torch": torch.__version__,
            "history": self.history,
        }
        if self.ranks.world > 1:
            meta["distributed"] = {"world_size": self.ranks.world, "backend": self.ranks.backend}
        return meta

    # -- the loop ------------------------------------------------------------------------------------------------------
    def fit(self, progress: ProgressFn | None = None, stop: threading.Event | None = None) -> PatchResult:
        """Step to `config.steps`, logging every `log_every` steps, monitoring held-out success every `eval_every`,
        checkpointing every `checkpoint_every` (and on `stop` or Ctrl-C), then write the PNG and sidecar."""
        cfg = self.cfg
        stopped = False
        t_last = time.perf_counter()
        try:
            while self.steps_taken < cfg.steps:
                if (self.stop_agreed if self.ranks.world > 1 else stop is not None and stop.is_set()):
                    stopped = True
                    break
                metrics = self.step(stop)
                step = self.steps_taken
                now = time.perf_counter()
                self.elapsed += now - t_last
                t_last = now
                if step % cfg.log_every == 0 or step == cfg.steps:
                    self.history.append({"step": step, "seconds": round(self.elapsed, 2),
                                         **{k: round(v, 5) for k, v in metrics.items()}})
                if self.eval_bank is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
                    rate = self.heldout_success()
                    self.history.append({"step": step, "seconds": round(self.elapsed, 2), "heldout_success": rate,
                                         "heldout_n": len(self.eval_bank)})
                    metrics["heldout_success"] = rate
                    t_last = time.perf_counter()  # evaluation time is not training time
                if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    self._save()
                if progress:
                    progress(step, cfg.steps, metrics)
        except KeyboardInterrupt:
            self._save()
            raise
        if stopped:
            self._save()
        result = PatchResult(self.rgba(), self.meta(), self.history, self.steps_taken, stopped, rank=self.ranks.rank)
        if cfg.out and not stopped and self.ranks.is_main:
            from patchlab.patch.io import save_patch

            result.path = save_patch(cfg.out, result.rgba[:3], result.rgba[3:], result.meta)
        return result

    def _save(self) -> None:
        if self.checkpoint is not None and self.ranks.is_main:
            save_checkpoint(self.checkpoint, self.state_dict())


def _to_cpu(obj):
    """A state with every tensor on the CPU (to broadcast it: a CUDA tensor would unpickle on rank 0's GPU)."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def train_patch(config: PatchConfig | dict, progress: ProgressFn | None = None,
                stop: threading.Event | None = None, resume: bool = False, models=None,
                force: bool = False, distributed: bool = False) -> PatchResult:
    """Optimise a universal patch. Checkpoints every `checkpoint_every` steps beside `config.out`; `resume=True`
    continues from that checkpoint. A set `stop` event (or Ctrl-C) saves a checkpoint and ends the run early.
    `models` may pass already-loaded classifiers (same names as config.models) to skip loading. Existing outputs at
    `config.out` are replaced only with `force` (see `check_patch_outputs`). `distributed=True` makes this process
    one rank of a data-parallel run that torchrun started (see patchlab.patch.distributed); rank 0 writes the files."""
    cfg = config if isinstance(config, PatchConfig) else PatchConfig.from_dict(config)
    if not distributed:
        return PatchTrainer(cfg, models).prepare(resume, force, progress).fit(progress, stop)
    from patchlab.patch.distributed import process_group

    with process_group(cfg.device) as ranks:
        return PatchTrainer(cfg, models, ranks).prepare(resume, force, progress).fit(progress, stop)
