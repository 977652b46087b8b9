"""Mask-robust fine-tuning of a zoo EfficientNet-Lite (PatchCleanser §4: models fine-tuned on Cutout-masked
images certify far more often, 41.6% -> 53.0% for ResNet-50 at a 2% patch).

Recipe: SGD (momentum 0.9, lr 1e-3), 2 grey holes of 128 px per 224 px image (`masking.cutout`), on the training
side of the shared split with random-resized-crop and flip augmentation. BatchNorm statistics and dropout stay in
eval mode (a few hundred images cannot re-estimate ImageNet statistics: `batchnorm="train"`, normalizing with batch
statistics and updating the running ones, measured 23% certified on validation against 50%). Three losses:
  "ce"      - cross-entropy on the true labels of the masked images (the paper's recipe);
  "distill" - KL divergence from the original model's prediction on the same crop *without* masks to the student's
              prediction on the masked crop (softened by `temperature`, scaled by its square as in Hinton et al.):
              it teaches "answer as if unmasked" for all 1000 classes, not just the classes of the training images
              (the shared images hold one image per class, so the held-out images are of classes fine-tuning
              never sees);
  "hard"    - cross-entropy on the original model's top-1 label for the unmasked crop (a certificate only needs
              the top-1 to survive the masks).
Masks: "cutout" (the paper's holes), "pairs" (two masks of the certifier's own set: its second-round input) or
"mixed" (per image: unmasked 1/4, one mask 1/4, two masks 1/2: every input kind the certifier feeds the model).
`worst_of` > 1 draws that many maskings per image and trains on the one with the highest loss (a certificate fails
on the worst of its 666 inputs, not the average one). `val` > 0 keeps a seeded subset of the training side out of
fine-tuning and scores a certification proxy on it (`certify_proxy`) for the original and the fine-tuned model:
model selection never looks at the held-out images.
`layers` = "all" trains every weight; "late" only the last stages, the head and the classifier.
`teacher` names other zoo models to label the crops (distill and hard): a larger Lite, or several with their
logits averaged, since a better teacher is the other half of Beyer et al.'s recipe.
`mixup` > 0 (teacher losses only) trains on convex mixes of pairs of crops, (1 - lam) x_i + lam x_j with the
partner's weight lam uniform in [0, mixup]: "function matching" (Beyer et al. 2022, "Knowledge distillation: a good
teacher is patient and consistent"): the teacher labels every mix, so a few hundred images give a far wider spread
of inputs to match than the images themselves.

The loop is `patchlab.models.digits.fit` (seeded per epoch, checkpointed every epoch, resumable: a resumed run equals
an uninterrupted one). The result is written with BatchNorm folded in, the form `patchlab.models.load_model(path,
arch="efficientnet_lite0")` loads.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchlab.defenses.masking import cutout
from patchlab.errors import PatchlabError
from patchlab.progress import ProgressFn

STORE_SIZE = 256  # training images are kept as 256 px centre crops; random crops are resized to the model's 224
LAYERS = ("all", "late")
BATCHNORM = ("frozen", "train")
LOSSES = ("distill", "ce", "hard")
MASKS = ("cutout", "pairs", "mixed")
VAL_SEED = 1  # which training-side images `val` holds out


@dataclass
class FinetuneConfig:
    images: str = ""
    arch: str = "efficientnet_lite0"
    layers: str = "all"
    batchnorm: str = "frozen"  # "frozen" (ImageNet's statistics) or "train" (batch statistics, running ones updated)
    loss: str = "distill"
    masks: str = "cutout"     # "cutout" (holes x hole_size, the paper), "pairs" or "mixed" (the certifier's set)
    holes: int = 2
    hole_size: int = 128
    patch: float = 0.02       # "pairs": the patch the PatchCleanser mask set is sized for
    k: int = 6
    fill: float = 0.5
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "sgd"    # "sgd" (momentum 0.9, the paper) or "adam"
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    crop_scale: float = 0.35  # smallest random-resized-crop area, as a share of the stored image
    temperature: float = 1.0  # "distill": softmax temperature of teacher and student
    worst_of: int = 1         # maskings drawn per image; the one with the highest loss is trained on
    mixup: float = 0.0        # teacher losses: mix pairs of crops, weight of the partner uniform in [0, mixup]
    teacher: str = ""         # teacher losses: zoo model(s) labelling the crops, comma-separated for an ensemble
                              # (their logits averaged); "" is the original `arch`
    val: int = 0              # training-side images kept out of fine-tuning, for model selection
    val_pairs: int = 60       # certification proxy: the certifier's first `val_pairs` pairs
    seed: int = 0
    limit: int | None = None  # use only the first N training images (tests)
    subset: int | None = None  # fine-tune on a seeded random N of the fine-tuning images (after `val`): data curves

    def __post_init__(self) -> None:
        if self.batchnorm not in BATCHNORM:
            raise PatchlabError(f"batchnorm must be one of {', '.join(BATCHNORM)}, got {self.batchnorm!r}")
        if self.layers not in LAYERS:
            raise PatchlabError(f"layers must be one of {', '.join(LAYERS)}, got {self.layers!r}")
        if self.masks not in MASKS:
            raise PatchlabError(f"masks must be one of {', '.join(MASKS)}, got {self.masks!r}")
        if self.loss not in LOSSES:
            raise PatchlabError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.holes < 0 or self.hole_size < 1 or not 0 < self.crop_scale <= 1:
            raise PatchlabError("holes must be >= 0, hole_size >= 1 and crop_scale in (0, 1]")
        if not self.temperature > 0:
            raise PatchlabError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.mixup <= 0.5:
            raise PatchlabError(f"mixup must lie in [0, 0.5] (the partner's largest weight), got {self.mixup}")
        if self.mixup and self.loss == "ce":
            raise PatchlabError("mixup needs a teacher to label the mixes: loss must be distill or hard, not ce")
        if self.teacher and self.loss == "ce":
            raise PatchlabError("a teacher only labels for the distill and hard losses, not ce")
        if self.subset is not None and self.subset < 1:
            raise PatchlabError(f"subset must be >= 1, got {self.subset}")
        if self.worst_of < 1 or self.val < 0 or self.val_pairs < 0:
            raise PatchlabError("worst_of must be >= 1, val and val_pairs >= 0")


class FinetuneNet(nn.Module):
    """An unfolded EfficientNet-Lite with its input scaling, kept in eval mode even while `fit` trains it (with
    `batchnorm="train"` its BatchNorm layers follow train(), dropout still not)."""

    def __init__(self, arch: str, layers: str, batchnorm: str = "frozen"):
        from patchlab.models.efficientnet_lite import LITE_SIZES, LiteScale, build_efficientnet_lite

        super().__init__()
        if arch not in LITE_SIZES:
            raise PatchlabError(f"masking fine-tuning supports {', '.join(LITE_SIZES)}, got {arch!r}")
        self.normalize = LiteScale()
        self.net = build_efficientnet_lite(arch)
        self.input_size = LITE_SIZES[arch]
        self.name = f"{arch}-masked"
        self.batchnorm = batchnorm
        self.config = {"kind": "finetune", "arch": arch, "layers": layers}
        if layers == "late":
            self.net.requires_grad_(False)
            for part in (*self.net.blocks[4:], self.net.conv_head, self.net.bn2, self.net.classifier):
                part.requires_grad_(True)

    def train(self, mode: bool = True) -> "FinetuneNet":
        super().train(False)  # frozen BatchNorm statistics, no dropout
        if mode and self.batchnorm == "train":
            for bn in self.modules():
                if isinstance(bn, nn.BatchNorm2d):
                    bn.train()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x).contiguous(memory_format=torch.channels_last))


def random_resized_crop(x: torch.Tensor, size: int, gen: torch.Generator, min_scale: float = 0.35,
                        flip: bool = True) -> torch.Tensor:
    """Per-image random crops (area share in [min_scale, 1], aspect 3/4..4/3), resized to `size`, then flipped
    with probability 1/2; one batched bilinear resample (torchvision's roi_align)."""
    from torchvision.ops import roi_align

    n, _, h, w = x.shape
    area = (min_scale + (1 - min_scale) * torch.rand(n, generator=gen)) * h * w
    log_ratio = (torch.rand(n, generator=gen) * 2 - 1) * torch.log(torch.tensor(4 / 3))
    ratio = torch.exp(log_ratio)
    cw = torch.sqrt(area * ratio).clamp(max=w)
    ch = torch.sqrt(area / ratio).clamp(max=h)
    x0 = torch.rand(n, generator=gen) * (w - cw)
    y0 = torch.rand(n, generator=gen) * (h - ch)
    boxes = torch.stack([torch.arange(n, dtype=torch.float32), x0, y0, x0 + cw, y0 + ch], 1).to(x.device)
    out = roi_align(x, boxes, output_size=(size, size), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    if flip:
        flips = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        out = torch.where(flips[:, None, None, None], out.flip(-1), out)
    return out.clamp(0, 1)


def mask_pairs(images: torch.Tensor, masks: torch.Tensor, gen: torch.Generator, fill: float = 0.5) -> torch.Tensor:
    """Each image with two random masks (possibly the same one) of a PatchCleanser set (K, 1, S, S) applied."""
    n = len(images)
    a = torch.randint(0, len(masks), (n,), generator=gen)
    b = torch.randint(0, len(masks), (n,), generator=gen)
    m = (masks[a] | masks[b]).to(images.device)
    return torch.where(m, torch.full((), fill, dtype=images.dtype, device=images.device), images)


def mask_mixed(images: torch.Tensor, masks: torch.Tensor, gen: torch.Generator, fill: float = 0.5) -> torch.Tensor:
    """Each image unmasked (1/4), with one mask (1/4) or with two masks (1/2) of a PatchCleanser set: the inputs
    the certifier feeds the model, the second round's pairs most often since they are most of the 666."""
    n = len(images)
    kind = torch.randint(0, 4, (n,), generator=gen)  # 0 unmasked, 1 one mask, 2-3 two masks
    a = torch.randint(0, len(masks), (n,), generator=gen)
    b = torch.randint(0, len(masks), (n,), generator=gen)
    m = (masks[a] & (kind > 0)[:, None, None, None]) | (masks[b] & (kind > 1)[:, None, None, None])
    m = m.to(images.device)
    return torch.where(m, torch.full((), fill, dtype=images.dtype, device=images.device), images)


def masking_loss(cfg: FinetuneConfig, size: int, teacher: nn.Module | None):
    """The `fit` loss: augment, mask, and score the student (see the module docstring)."""
    from patchlab.defenses.masks import mask_set

    pc_masks = mask_set(size, cfg.patch, cfg.k).tensor() if cfg.masks in ("pairs", "mixed") else None
    t = cfg.temperature

    def draw(clean, gen):
        if cfg.masks == "pairs":
            return mask_pairs(clean, pc_masks, gen, cfg.fill)
        if cfg.masks == "mixed":
            return mask_mixed(clean, pc_masks, gen, cfg.fill)
        return cutout(clean, cfg.holes, cfg.hole_size, gen, cfg.fill) if cfg.holes else clean

    def per_image(logits, y, target):
        if cfg.loss == "ce":
            return F.cross_entropy(logits, y, reduction="none")
        if cfg.loss == "hard":
            return F.cross_entropy(logits, target.argmax(-1), reduction="none")
        student = (logits.float() / t).log_softmax(-1)
        return F.kl_div(student, target, log_target=True, reduction="none").sum(-1) * t * t

    def masked_finetune(model, x, y, gen):
        clean = random_resized_crop(x, size, gen, cfg.crop_scale)
        if cfg.mixup:  # each crop mixed with another of the batch; the teacher labels the mix below
            partner = torch.randperm(len(clean), generator=gen).to(clean.device)
            lam = (torch.rand(len(clean), generator=gen) * cfg.mixup).to(clean.device, clean.dtype)[:, None, None, None]
            clean = torch.lerp(clean, clean[partner], lam)
        target = None
        if cfg.loss != "ce":
            with torch.no_grad():
                target = (teacher(clean).float() / t).log_softmax(-1)
        masked = draw(clean, gen)
        if cfg.worst_of > 1:  # the hardest of `worst_of` maskings per image, scored without gradients
            with torch.no_grad():
                tries = [masked] + [draw(clean, gen) for _ in range(cfg.worst_of - 1)]
                scores = torch.stack([per_image(model(m), y, target) for m in tries])  # (worst_of, N)
                pick = scores.argmax(0).to(clean.device)
                masked = torch.stack(tries)[pick, torch.arange(len(clean), device=clean.device)]
        return per_image(model(masked), y, target).mean()

    name = (f"masked_finetune_{cfg.loss}_{cfg.masks}_{cfg.holes}x{cfg.hole_size}_{cfg.patch}_{cfg.k}_{cfg.fill}_"
            f"{cfg.crop_scale}")
    # options added later join the name only when set, so checkpoints of the earlier recipe still resume
    if cfg.temperature != 1.0:
        name += f"_t{cfg.temperature}"
    if cfg.worst_of > 1:
        name += f"_worst{cfg.worst_of}"
    if cfg.mixup:
        name += f"_mix{cfg.mixup}"
    if cfg.batchnorm != "frozen":
        name += f"_bn{cfg.batchnorm}"
    if cfg.teacher:
        name += f"_teacher{cfg.teacher}"
    if cfg.val:
        name += f"_val{cfg.val}"
    masked_finetune.__name__ = name
    return masked_finetune


class Teacher(nn.Module):
    """One or more zoo classifiers labelling the student's crops: each sees the crop resized to its own input size
    (a larger Lite is more accurate at its native resolution), and their logits are averaged."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.models = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for m in self.models:
            size = m.input_size
            inp = x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bicubic",
                                                               align_corners=False).clamp(0, 1)
            outs.append(m(inp).float())
        return torch.stack(outs).mean(0)


def load_teacher(config: FinetuneConfig, device) -> nn.Module | None:
    """The model the distill and hard losses learn from: the original `arch`, or `config.teacher`'s zoo models."""
    from patchlab.models import load_model

    if config.loss == "ce":
        return None
    names = [n.strip() for n in config.teacher.split(",") if n.strip()] or [config.arch]
    return Teacher([load_model(n, device) for n in names]).eval()  # one model at its own size: the model itself


def split_validation(images: str | Path, val: int = 0, limit: int | None = None, subset: int | None = None):
    """(fine-tuning, validation) parts of the shared split's training side: `val` images chosen with `VAL_SEED`
    are kept out of fine-tuning for model selection (after `limit`, which takes the first N training images).
    `subset` then keeps a random N of the fine-tuning part (the same validation images, less data to learn from);
    a smaller subset is a part of a larger one, so the points of a data curve are nested."""
    from patchlab.defenses.data import Labelled, shared_split

    data = shared_split(images, "train", limit)
    if val >= len(data.paths):
        raise PatchlabError(f"val must be smaller than the {len(data.paths)} training images, got {val}")
    order = torch.randperm(len(data.paths), generator=torch.Generator().manual_seed(VAL_SEED))
    keep = order[val:].tolist()
    if subset is not None:
        if subset > len(keep):
            raise PatchlabError(f"subset must be at most the {len(keep)} fine-tuning images, got {subset}")
        keep = keep[:subset]
    keep, vals = sorted(keep), sorted(order[:val].tolist())
    return (Labelled([data.paths[i] for i in keep], data.labels[keep]),
            Labelled([data.paths[i] for i in vals], data.labels[vals]))


def load_training_images(images: str | Path, limit: int | None = None, val: int = 0, subset: int | None = None):
    from patchlab.data import read_image
    from patchlab.models.preprocess import center_crop, resize_short_side

    data, _ = split_validation(images, val, limit, subset)
    x = torch.stack([center_crop(resize_short_side(read_image(p), STORE_SIZE), STORE_SIZE) for p in data.paths])
    return x, data.labels


def save_folded(model: FinetuneNet, path: str | Path, meta: dict) -> Path:
    """The fine-tuned weights with BatchNorm folded (what load_model(path, arch=...) expects), as safetensors."""
    import copy
    import json

    from safetensors.torch import save_file

    from patchlab.artifacts import atomic_path, safetensors_tag
    from patchlab.models.fold import fold_batchnorm

    net = copy.deepcopy(model.net).eval()
    fold_batchnorm(net)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"patchlab": json.dumps(meta, default=str),
                                               **safetensors_tag("defense-model", "patchlab defend train masking")})
    return Path(path)


def finetune(config: FinetuneConfig, out: str | Path, checkpoint: str | Path | None = None, device="cpu",
             progress: ProgressFn | None = None, stop=None) -> dict:
    """Fine-tune, write `out` (.safetensors), return the run's summary. With `checkpoint` an interrupted run
    continues from its last finished epoch (and a finished one returns at once)."""
    from patchlab.models import resolve_device
    from patchlab.models.digits import FitConfig, fit

    start = time.perf_counter()
    dev = resolve_device(device)
    x, y = load_training_images(config.images, config.limit, config.val, config.subset)
    model = FinetuneNet(config.arch, config.layers, config.batchnorm).to(dev)
    teacher = load_teacher(config, dev)
    fit_cfg = FitConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, optimizer=config.optimizer,
                        weight_decay=config.weight_decay, seed=config.seed, lr_schedule=config.lr_schedule)
    loss_fn = masking_loss(config, model.input_size, teacher)
    result = fit(model, x, y, fit_cfg, loss_fn=loss_fn, progress=progress, checkpoint=checkpoint, stop=stop)
    meta = {"arch": config.arch, "config": asdict(config), "history": result.history,
            "train_images": len(x), "seconds": result.seconds}
    summary = {"out": str(out), "arch": config.arch, "n": len(x), "epochs": len(result.history),
               "seconds": result.seconds, "resumed_from": result.resumed_from, "stopped": result.stopped,
               "history": result.history, "settings": asdict(config),
               "load": f"patchlab.models.load_model({str(out)!r}, arch={config.arch!r})"}
    if not result.stopped:
        save_folded(model, out, meta)
        if config.val:
            summary["validation"] = validate(config, out, dev)
    summary["wall_seconds"] = time.perf_counter() - start
    return summary


def validate(config: FinetuneConfig, weights: str | Path, device="cpu", original: bool = True) -> dict:
    """`certify_proxy` on the `val` images kept out of fine-tuning: the original model (unless `original` is False)
    and the fine-tuned one."""
    from patchlab.defenses.data import load_images
    from patchlab.models import load_model

    _, val = split_validation(config.images, config.val, config.limit)
    out = {"images": [p.name for p in val.paths]}
    for label in ("original", "fine-tuned")[0 if original else 1:]:
        net = load_model(config.arch, device) if label == "original" else load_model(str(weights), device,
                                                                                      arch=config.arch)
        x = load_images(val.paths, net.input_size)
        out[label] = certify_proxy(net, x, val.labels, config.patch, config.k, config.val_pairs, config.fill)
    return out


def certify_proxy(model, x: torch.Tensor, y: torch.Tensor, patch: float | int = 0.02, k: int = 6,
                  pairs: int = 60, fill: float = 0.5, image_size: int | None = None) -> dict:
    """A cheap stand-in for PatchCleanser's certified accuracy, for model selection: the share of images whose
    prediction is the label unmasked, under every one of the K masks, and under the first `pairs` mask pairs in
    the certifier's own order (least confident masks first, where a certificate usually breaks). It can only
    overstate the certified share (a later pair may still fail); with pairs = K(K-1)/2 it equals it. Deterministic:
    two models are scored on the same inputs. It is `PatchCleanser.certify(..., max_pairs=pairs)`, read off."""
    from patchlab.defenses.patchcleanser import PatchCleanser, summarize

    labels = [int(v) for v in y]
    verdicts = PatchCleanser(model, patch, k, fill, image_size=image_size).certify(x, labels, max_pairs=pairs)
    s = summarize(verdicts, labels)
    # a unanimous first round (case 1) for the label: every one-mask prediction is the label
    singles = sum(v.case == 1 and v.prediction == lab for v, lab in zip(verdicts, labels))
    return {"n": s["n"], "pairs": pairs, "proxy_certified": s["certified_accuracy"], "proxy_ci95": s["certified_ci95"],
            "singles_correct": singles / len(x), "clean_accuracy": s["undefended_accuracy"],
            "clean_ci95": s["undefended_ci95"]}


__all__ = ["FinetuneConfig", "FinetuneNet", "Teacher", "certify_proxy", "finetune", "load_teacher",
           "load_training_images", "mask_mixed", "mask_pairs", "masking_loss", "random_resized_crop", "save_folded",
           "split_validation", "validate"]
