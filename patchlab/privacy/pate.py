"""PATE (Papernot et al. 2016, 2018): teachers on disjoint parts of the private data vote on public inputs; a noisy
aggregate of their votes labels the public data; a student trained on those labels is what gets released.

    from patchlab.privacy.pate import PATEConfig, run_pate
    result = run_pate(data, PATEConfig(teachers=50, aggregator="confident"), out_dir="runs/pate")
    result.student_accuracy, result.epsilon, result.answered

Teachers (`teacher`): "network" trains the digits model `model` from scratch on each part; "scatter-linear" is a
multinomial logistic regression on fixed ScatterNet features (kymatio; Tramer & Boneh 2021). The features use no
private data (a fixed wavelet transform), so they change nothing in PATE's analysis, and a linear model on them
learns far more from a small part than a CNN from scratch: more accurate teachers agree more, and agreement is what
the data-dependent analysis turns into a small epsilon. The student (`student`, default: the teacher's kind) can be
either kind too. With `features="public-pca"` the linear teachers see only the top `feature_dim` principal
components of those features, fitted on the public images without labels (PATE's public data is unlabelled and
not private): a teacher of 50 images then fits 48 weights per class instead of 3969, and is far more accurate.
`validation` holds out public images with their labels for choosing settings, so the test part stays untouched.

Aggregators (`aggregate`): "lnmax" (Laplace noise of scale 1/gamma on the counts, 2016), "gnmax" (Gaussian noise
sigma, 2018) and "confident" (Confident-GNMax: answer only if max count + N(0, sigma1^2) >= threshold, then GNMax
with sigma). The privacy analysis is in `pate_analysis` (our own code). The student is semi-supervised when
`pseudo_label` > 0: after training on the teachers' answers it labels the public inputs the aggregator did not
answer and keeps those it is at least that confident about, then retrains (the student's own predictions are
post-processing: no privacy cost).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from patchlab.errors import PatchlabError
from patchlab.privacy.data import PrivacyData
from patchlab.privacy.pate_analysis import PateAnalysis, analyse
from patchlab.privacy.parallel import TrainJob, train_many

from patchlab.progress import ProgressFn
from patchlab.registry import Registry


@dataclass
class PATEConfig:
    teachers: int = 50
    aggregator: str = "confident"
    gamma: float = 0.05          # LNMax: Laplace scale 1/gamma (2016: 0.05)
    sigma: float = 10.0          # GNMax sigma (sigma2 of Confident-GNMax)
    threshold: float | None = None  # Confident-GNMax T; None = 0.6 x teachers
    sigma1: float | None = None     # Confident-GNMax threshold noise; None = 0.5 x teachers
    queries: int = 1000          # public inputs shown to the aggregator (the rest stays unlabelled)
    delta: float = 1e-5
    model: str = "dpcnn"         # teachers' and student's digits model kind
    activation: str = "relu"
    teacher_epochs: int = 40
    teacher_lr: float = 2e-3
    teacher_batch_size: int = 32
    student_epochs: int = 40
    student_lr: float = 2e-3
    student_batch_size: int = 32
    pseudo_label: float = 0.0    # > 0: semi-supervised student keeps its own predictions at least this confident
    seed: int = 0
    workers: int | None = None
    teacher: str = "network"     # "network" (`model` from scratch) or "scatter-linear" (see TEACHERS)
    student: str | None = None   # the student's kind; None = the teacher's
    linear_epochs: int = 150     # scatter-linear models: full-batch Adam steps,
    linear_lr: float = 0.05      # its learning rate
    linear_weight_decay: float = 0.02  # and L2 (best of 0-0.2 tried on teachers of 24-120 examples)
    linear_optimizer: str = "adam"  # or "lbfgs" (converges exactly; linear_epochs = L-BFGS steps, linear_lr 1)
    self_training: int = 1       # rounds of pseudo-labelling when pseudo_label > 0
    student_weight_decay: float | None = None  # a scatter-linear student's L2; None = linear_weight_decay
    curriculum: bool = False     # the student's self-training by class-balanced shares (see fit_self_training)
    features: str = "scatter"    # what scatter-linear teachers see: "scatter" or "public-pca" (see FEATURES)
    feature_dim: int = 48        # "public-pca": principal components kept
    validation: int = 0          # the last N public images: held out for model selection (see run_pate)
    target_epsilon: float | None = None  # ask only the largest prefix of the `queries` within this data-dep. eps
    teacher_self_training: int = 0  # scatter-linear teachers: rounds of self-training on the public pool,
    teacher_pseudo_label: float = 0.9  # keeping their own labels at least this confident

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PATEConfig":
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise PatchlabError(f"unknown PATE settings: {', '.join(sorted(unknown))}")
        return cls(**data)

    @property
    def t(self) -> float:
        return 0.6 * self.teachers if self.threshold is None else float(self.threshold)

    @property
    def s1(self) -> float:
        return 0.5 * self.teachers if self.sigma1 is None else float(self.sigma1)

    @property
    def student_kind(self) -> str:
        return self.teacher if self.student is None else self.student

    def validate(self, n_private: int, n_public: int) -> None:
        self.aggregator = AGGREGATORS.resolve(self.aggregator)
        self.teacher = TEACHERS.resolve(self.teacher)
        if self.student is not None:
            self.student = TEACHERS.resolve(self.student)
        if self.linear_optimizer not in ("adam", "sgd", "lbfgs"):
            raise PatchlabError(f"linear_optimizer must be adam, sgd or lbfgs, got '{self.linear_optimizer}'")
        if self.student_weight_decay is not None and self.student_weight_decay < 0:
            raise PatchlabError(f"student_weight_decay must be >= 0, got {self.student_weight_decay}")
        if self.linear_epochs < 1 or not self.linear_lr > 0 or self.linear_weight_decay < 0:
            raise PatchlabError("linear_epochs must be >= 1, linear_lr > 0 and linear_weight_decay >= 0")
        self.features = FEATURES.resolve(self.features)
        if self.features != "scatter" and self.teacher != "scatter-linear":
            raise PatchlabError(f"features='{self.features}' needs teacher='scatter-linear'")
        if not 0 <= self.validation < n_public:
            raise PatchlabError(f"validation must lie in [0, {n_public - 1}] (public images held out), "
                                f"got {self.validation}")
        n_public -= self.validation
        if self.features == "public-pca" and not 1 <= self.feature_dim <= n_public:
            raise PatchlabError(f"feature_dim must lie in [1, {n_public}] (the public images it is fitted on), "
                                f"got {self.feature_dim}")
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise PatchlabError(f"target_epsilon must be > 0, got {self.target_epsilon}")
        if self.teacher_self_training < 0 or not 0 < self.teacher_pseudo_label < 1:
            raise PatchlabError("teacher_self_training must be >= 0 and teacher_pseudo_label in (0, 1)")
        if self.teacher_self_training and self.teacher != "scatter-linear":
            raise PatchlabError("teacher_self_training needs teacher='scatter-linear'")
        if self.self_training < 1:
            raise PatchlabError(f"self_training must be >= 1, got {self.self_training}")
        if self.teachers < 2:
            raise PatchlabError(f"teachers must be >= 2, got {self.teachers}")
        if self.teachers > n_private:
            raise PatchlabError(f"{self.teachers} teachers need at least that many private examples "
                                f"(there are {n_private})")
        if not 1 <= self.queries <= n_public:
            raise PatchlabError(f"queries must lie in [1, {n_public}] (the public part less validation), "
                                f"got {self.queries}")
        if self.aggregator == "lnmax" and not self.gamma > 0:
            raise PatchlabError(f"gamma must be > 0, got {self.gamma}")
        if self.aggregator != "lnmax" and not self.sigma > 0:
            raise PatchlabError(f"sigma must be > 0, got {self.sigma}")
        if self.aggregator == "confident" and not self.s1 > 0:
            raise PatchlabError(f"sigma1 must be > 0, got {self.s1}")
        if not 0 < self.delta < 1:
            raise PatchlabError(f"delta must lie in (0, 1), got {self.delta}")
        if not 0 <= self.pseudo_label < 1:
            raise PatchlabError(f"pseudo_label must lie in [0, 1), got {self.pseudo_label}")


# How a teacher (or the student) is built and trained
TEACHERS: Registry[str] = Registry("teacher")
TEACHERS.register("network", "network", title="the digits model `model`, trained from scratch on its part",
                  aliases=("cnn",))
TEACHERS.register("scatter-linear", "scatter-linear", title="logistic regression on fixed ScatterNet features",
                  aliases=("scatter", "scatternet"))


# What scatter-linear teachers see. Neither uses a label or a private or test image, so PATE's analysis is unchanged.
FEATURES: Registry[str] = Registry("features")
FEATURES.register("scatter", "scatter", title="the fixed ScatterNet features (81 x 7 x 7 for MNIST)")
FEATURES.register("public-pca", "public-pca", title="their top `feature_dim` principal components, fitted on the "
                  "public images only (no labels)", aliases=("pca",))


def partition(n: int, parts: int, seed: int) -> list[list[int]]:
    """Disjoint, near-equal random parts of range(n)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()
    return [order[i::parts] for i in range(parts)]


def vote_counts(predictions: torch.Tensor, num_classes: int) -> np.ndarray:
    """(teachers, queries) predicted labels -> (queries, classes) vote counts."""
    p = torch.as_tensor(predictions, dtype=torch.long)
    counts = torch.zeros(p.shape[1], num_classes, dtype=torch.long)
    counts.scatter_add_(1, p.t(), torch.ones_like(p.t()))
    return counts.numpy()


@dataclass
class Aggregate:
    labels: np.ndarray      # (queries,) chosen label, -1 where Confident-GNMax declined to answer
    answered: np.ndarray    # (queries,) bool


# The noisy-max mechanisms: (counts, rng, gamma, sigma, threshold, sigma1) -> Aggregate
AGGREGATORS: Registry = Registry("aggregator")


@AGGREGATORS.register("lnmax", title="LNMax (Laplace noisy max, 2016)", aliases=("laplace",))
def _lnmax(c: np.ndarray, rng: np.random.Generator, gamma, sigma, threshold, sigma1) -> Aggregate:
    labels = np.argmax(c + rng.laplace(0.0, 1.0 / gamma, size=c.shape), axis=1)
    return Aggregate(labels, np.ones(len(c), dtype=bool))


@AGGREGATORS.register("gnmax", title="GNMax (Gaussian noisy max, 2018)", aliases=("gaussian",))
def _gnmax(c: np.ndarray, rng: np.random.Generator, gamma, sigma, threshold, sigma1) -> Aggregate:
    labels = np.argmax(c + rng.normal(0.0, sigma, size=c.shape), axis=1)
    return Aggregate(labels, np.ones(len(c), dtype=bool))


@AGGREGATORS.register("confident", title="Confident-GNMax (answers only clear majorities, 2018)",
                      aliases=("confident-gnmax",))
def _confident(c: np.ndarray, rng: np.random.Generator, gamma, sigma, threshold, sigma1) -> Aggregate:
    answered = c.max(axis=1) + rng.normal(0.0, sigma1, size=len(c)) >= threshold
    noisy = np.argmax(c + rng.normal(0.0, sigma, size=c.shape), axis=1)
    return Aggregate(np.where(answered, noisy, -1), answered)


def aggregate(counts, aggregator: str, rng: np.random.Generator, *, gamma: float | None = None,
              sigma: float | None = None, threshold: float | None = None, sigma1: float | None = None) -> Aggregate:
    """Noisy-max labels from (queries, classes) vote counts by a registered aggregator."""
    return AGGREGATORS.get(aggregator)(np.asarray(counts, dtype=np.float64), rng, gamma, sigma, threshold, sigma1)


@dataclass
class PATEResult:
    config: PATEConfig
    student: torch.nn.Module
    student_accuracy: float
    teacher_accuracy: list[float]
    ensemble_accuracy: float            # plurality vote, no noise, on the test part
    label_accuracy: float               # answered labels vs the public part's true labels
    answered: int
    pseudo_labelled: int
    epsilon: float                      # data-dependent, tight conversion
    epsilon_classic: float
    epsilon_independent: float
    order: float
    analysis: PateAnalysis
    counts: np.ndarray
    labels: np.ndarray
    n: dict = field(default_factory=dict)
    seconds: float = 0.0
    validation_accuracy: float | None = None  # the student on the held-out public images (cfg.validation)

    def summary(self) -> dict:
        from patchlab.stats import wilson_interval

        n_test = self.n["test"]
        k = round(self.student_accuracy * n_test)
        per_query = self.analysis.per_query()
        return {
            **self.config.to_dict(), "threshold": self.config.t if self.config.aggregator == "confident" else None,
            "sigma1": self.config.s1 if self.config.aggregator == "confident" else None,
            "accuracy": self.student_accuracy, "ci95": list(wilson_interval(k, n_test)), "n": n_test,
            "validation_accuracy": self.validation_accuracy,
            "teacher_accuracy_mean": float(np.mean(self.teacher_accuracy)),
            "teacher_accuracy_min": float(np.min(self.teacher_accuracy)),
            "ensemble_accuracy": self.ensemble_accuracy, "label_accuracy": self.label_accuracy,
            "queries": int(len(self.labels)), "answered": self.answered, "pseudo_labelled": self.pseudo_labelled,
            "epsilon": self.epsilon, "epsilon_classic": self.epsilon_classic,
            "epsilon_data_independent": self.epsilon_independent, "delta": self.config.delta,
            "order": self.order, "per_query_rdp_mean": float(per_query.mean()) if len(per_query) else 0.0,
            "epsilon_curve": [{"queries": q, "epsilon": e} for q, e in self.analysis.curve()],
            "sizes": self.n, "seconds": self.seconds,
        }


FEATURES_FORMAT = "patchlab-scatter-features-1"


def _scatter_model(size: int, seed: int | None = 0):
    from patchlab.models.digits import make_digits_model
    from patchlab.privacy.data import model_kwargs

    return make_digits_model(**model_kwargs("scatter", "relu", size), seed=seed)


def fixed_features(data: PrivacyData, out_dir: str | Path | None = None) -> dict[str, torch.Tensor]:
    """ScatterNet features of the private, public and test parts ({part: (N, feats, s, s)}), computed once; with
    `out_dir`, cached in `<out_dir>/scatter.features.pt` (recomputed when the data differ)."""
    from patchlab.artifacts import check_output, save_torch
    from patchlab.privacy.parallel import data_key

    parts = {k: getattr(data, k) for k in ("private", "public", "test")}
    key = data_key(torch.cat([p.images for p in parts.values()]), torch.cat([p.labels for p in parts.values()]))
    path = Path(out_dir) / "scatter.features.pt" if out_dir else None
    if path is not None and path.is_file():
        check_output(path, "scatter-features", force=True)  # only our own cache may be read or replaced
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(cached, dict) and cached.get("format") == FEATURES_FORMAT and cached.get("key") == key:
            return {k: cached[k] for k in parts}
    net = _scatter_model(data.size)
    feats = {k: net.fixed_features(p.images) for k, p in parts.items()}
    if path is not None:
        check_output(path, "scatter-features", force=True)
        save_torch({"format": FEATURES_FORMAT, "key": key, **feats}, path)
    return feats


@dataclass
class PublicPCA:
    """The top principal components of the (GroupNorm'd, flattened) ScatterNet features of the public images: a
    fixed linear map, fitted without labels and without any private or test image. A linear teacher on these
    coordinates is a linear model on the full features, so `fold` turns it back into a ScatterNet model."""

    mean: torch.Tensor          # (F,)
    components: torch.Tensor    # (k, F), orthonormal rows
    scale: float                # one global scale: the coordinates' overall std on the fitting images
    size: int

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, C, s, s) ScatterNet features -> (N, k, 1, 1) coordinates."""
        z = (_normalise(feats, self.size) - self.mean) @ self.components.T / self.scale
        return z[:, :, None, None]

    def fold(self, linear) -> torch.nn.Module:
        """A linear model on the coordinates (`logreg` kind, size 1) -> the ScatterNet model with the same logits."""
        net = _scatter_model(self.size, 0)  # weights replaced below
        w = linear.head.weight.detach() @ self.components / self.scale
        with torch.no_grad():
            net.trainable[2].weight.copy_(w)
            net.trainable[2].bias.copy_(linear.head.bias.detach() - w @ self.mean)
        return net.eval()


def _normalise(feats: torch.Tensor, size: int) -> torch.Tensor:
    """The scatter model's own parameter-free GroupNorm, flattened (what its linear layer sees)."""
    with torch.no_grad():
        return _scatter_model(size, 0).trainable[:2](feats)


def public_pca(public_features: torch.Tensor, dim: int, size: int) -> PublicPCA:
    """Fit PublicPCA on the ScatterNet features of public images (pass only the public images it may see)."""
    f = _normalise(public_features, size).double()
    mean = f.mean(0)
    _, _, vh = torch.linalg.svd(f - mean, full_matrices=False)
    comps = vh[:dim]
    scale = float(((f - mean) @ comps.T).std())
    return PublicPCA(mean.float(), comps.float(), scale, size)


def _on(models, x: torch.Tensor, features: bool):
    """The models' logits on x: images, or (features=True) the fixed features their trainable part takes."""
    from patchlab.models.digits import predict_logits

    return [predict_logits(m.trainable if features else m, x) for m in models]


def _predict(models, x: torch.Tensor, features: bool = False) -> torch.Tensor:
    return torch.stack([z.argmax(1) for z in _on(models, x, features)])


def _accuracy(model, x: torch.Tensor, y: torch.Tensor, features: bool) -> float:
    return float((_predict([model], x, features)[0] == y).float().mean()) if len(x) else 0.0


def train_teachers(data: PrivacyData, cfg: PATEConfig, *, out_dir: str | Path | None = None,
                   progress: ProgressFn | None = None, stop: threading.Event | None = None,
                   features: dict[str, torch.Tensor] | None = None) -> list:
    """One model per disjoint part of the private data, trained in parallel processes (`cfg.workers`); with
    out_dir, saved model by model and reused by a rerun. scatter-linear teachers train on `features` (computed
    when not given) and are saved as whole ScatterNet models (they take images); with cfg.features "public-pca"
    they train (and are saved) as linear models on the PublicPCA coordinates and are returned folded into whole
    ScatterNet models."""
    parts = partition(len(data.private), cfg.teachers, cfg.seed)
    pca = None
    if TEACHERS.resolve(cfg.teacher) == "scatter-linear":
        from patchlab.privacy.data import model_kwargs

        feats = features or fixed_features(data)
        x = feats["private"]
        model = model_kwargs("scatter", "relu", data.size)
        trainer = "fit-features"
        if FEATURES.resolve(cfg.features) == "public-pca":  # fitted on the student's public pool only
            pca = public_pca(feats["public"][:len(data.public) - cfg.validation], cfg.feature_dim, data.size)
            x = pca(x)
            model = {"kind": "logreg", "size": 1, "channels": cfg.feature_dim}
            trainer = "fit"

        def settings(i: int, n: int) -> dict:  # full-batch logistic regression with L2
            return {"epochs": cfg.linear_epochs, "lr": cfg.linear_lr, "batch_size": n,
                    "weight_decay": cfg.linear_weight_decay, "seed": cfg.seed * 10_007 + i,
                    **({"optimizer": cfg.linear_optimizer} if cfg.linear_optimizer != "adam" else {})}
    else:
        x = data.private.images
        model = {"kind": cfg.model, "size": data.size}
        if cfg.model in ("cnn", "dpcnn", "mlp"):
            model["activation"] = cfg.activation
        trainer = "fit"

        def settings(i: int, n: int) -> dict:
            return {"epochs": cfg.teacher_epochs, "lr": cfg.teacher_lr, "batch_size": cfg.teacher_batch_size,
                    "seed": cfg.seed * 10_007 + i}
    y = data.private.labels
    unlabelled: list[int] = []
    if cfg.teacher_self_training:  # the public pool joins x as unlabelled inputs (their y is never read)
        pool = feats["public"][:len(data.public) - cfg.validation]
        unlabelled = list(range(len(x), len(x) + len(pool)))
        x = torch.cat([x, pca(pool) if pca is not None else pool])
        y = torch.cat([y, torch.full((len(pool),), -1, dtype=y.dtype)])
    jobs = [TrainJob(name=f"teacher-{i:03d}", indices=idx, model={**model, "seed": cfg.seed * 10_007 + i},
                     trainer=trainer, settings=settings(i, len(idx)), unlabelled=unlabelled,
                     self_training=cfg.teacher_self_training, pseudo_label=cfg.teacher_pseudo_label)
            for i, idx in enumerate(parts)]
    models, _ = train_many(jobs, x, y, workers=cfg.workers, out_dir=out_dir, progress=progress, stop=stop)
    return models if pca is None else [None if m is None else pca.fold(m) for m in models]


def train_student(x: torch.Tensor, y: torch.Tensor, cfg: PATEConfig, unlabelled: torch.Tensor | None = None,
                  size: int | None = None):
    """A student on (x, y); with cfg.pseudo_label, `cfg.self_training` more rounds, each retrained on (x, y) plus
    its own labels of the `unlabelled` inputs it is at least that confident about (post-processing: no privacy
    cost). For a scatter-linear student, x and unlabelled are ScatterNet features and `size` is the image size.
    Returns (model, how many pseudo-labels the last round used)."""
    from patchlab.models.digits import fit, fit_self_training, make_digits_model, predict_logits

    linear = cfg.student_kind == "scatter-linear"
    seed = cfg.seed + 777

    def _fit(xs, ys):
        if linear:
            net = _scatter_model(int(size), seed)
            wd = cfg.linear_weight_decay if cfg.student_weight_decay is None else cfg.student_weight_decay
            fit(net.trainable, xs, ys, epochs=cfg.linear_epochs, lr=cfg.linear_lr, batch_size=len(xs),
                weight_decay=wd, seed=seed, optimizer=cfg.linear_optimizer)
            return net
        kwargs = {"activation": cfg.activation} if cfg.model in ("cnn", "dpcnn", "mlp") else {}
        net = make_digits_model(cfg.model, size=int(x.shape[-1]), seed=seed, **kwargs)
        fit(net, xs, ys, epochs=cfg.student_epochs, lr=cfg.student_lr, batch_size=cfg.student_batch_size, seed=seed)
        return net

    if len(x) == 0:
        raise PatchlabError("the aggregator answered no query: lower the threshold or the noise")
    return fit_self_training(_fit, x, y, unlabelled if (cfg.pseudo_label > 0 or cfg.curriculum) else None,
                             cfg.self_training, cfg.pseudo_label,
                             lambda m, u: predict_logits(m.trainable if linear else m, u), curriculum=cfg.curriculum)


def _aggregate(counts: np.ndarray, cfg: PATEConfig) -> tuple[Aggregate, PateAnalysis]:
    """cfg's aggregator on the vote counts (noise seeded by cfg.seed, as every run draws it) and its analysis."""
    rng = np.random.default_rng(cfg.seed + 4242)
    agg = aggregate(counts, cfg.aggregator, rng, gamma=cfg.gamma, sigma=cfg.sigma, threshold=cfg.t, sigma1=cfg.s1)
    return agg, analyse(counts, cfg.aggregator, cfg.delta, sigma=cfg.sigma, gamma=cfg.gamma, threshold=cfg.t,
                        sigma1=cfg.s1, answered=agg.answered)


def queries_within(counts: np.ndarray, cfg: PATEConfig, epsilon: float) -> int:
    """The most queries q <= len(counts) whose run (cfg's aggregator and seed on the first q vote counts, drawn as
    run_pate draws them) costs a data-dependent epsilon <= `epsilon`; 0 if none. Bisection: epsilon grows with q
    apart from the noise's draws, and the q returned is one whose realised run was checked to fit."""
    lo, hi = 0, len(counts)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _aggregate(counts[:mid], cfg)[1].epsilon() <= epsilon:
            lo = mid
        else:
            hi = mid - 1
    return lo


def run_pate(data: PrivacyData, config: PATEConfig | None = None, *, out_dir: str | Path | None = None,
             progress: ProgressFn | None = None, stop: threading.Event | None = None, teachers: list | None = None,
             scatter_features: dict[str, torch.Tensor] | None = None, **overrides) -> PATEResult:
    """Teachers (trained in parallel, resumable through out_dir), noisy aggregation of their votes on the first
    `queries` public inputs (with cfg.target_epsilon: the most of them that fit in it, `queries_within`), the privacy
    analysis, and the student. Progress: teachers first, then the student. `scatter_features`: the ScatterNet
    features of `data` (`fixed_features`), when the caller has them already.

    With cfg.validation = N, the last N public images are held out: never queried, never seen by the student or
    the public PCA; the student's accuracy on them (`validation_accuracy`) is for choosing settings, so that the
    test part is used only to report the chosen ones."""
    cfg = PATEConfig.from_dict({**(config or PATEConfig()).to_dict(), **overrides})
    cfg.validate(len(data.private), len(data.public))
    t0 = time.perf_counter()
    total = cfg.teachers + 2

    def teacher_progress(step, _total, metrics):
        if progress is not None:
            progress(step, total, {"stage": "teachers", **metrics})

    on_features = cfg.teacher == "scatter-linear"
    s_features = cfg.student_kind == "scatter-linear"
    feats = scatter_features or (fixed_features(data, out_dir) if (on_features or s_features) else None)

    def inputs(part: str, features: bool) -> torch.Tensor:
        return feats[part] if features else getattr(data, part).images

    if teachers is None:
        teachers = train_teachers(data, cfg, out_dir=Path(out_dir) / "teachers" if out_dir else None,
                                  progress=teacher_progress, stop=stop, features=feats)
    if stop is not None and stop.is_set():
        raise PatchlabError("stopped while training the teachers (finished teachers are kept in out_dir)")
    num_classes = int(data.private.labels.max()) + 1
    counts = vote_counts(_predict(teachers, inputs("public", on_features)[:cfg.queries], on_features), num_classes)
    if cfg.target_epsilon is not None:
        cfg.queries = queries_within(counts, cfg, cfg.target_epsilon)
        if not cfg.queries:
            raise PatchlabError(f"not one query fits in target_epsilon={cfg.target_epsilon:g}")
        counts = counts[:cfg.queries]
    agg, an = _aggregate(counts, cfg)
    if progress is not None:
        progress(cfg.teachers + 1, total, {"stage": "aggregated", "answered": int(agg.answered.sum()),
                                           "epsilon": an.epsilon()})
    keep = torch.as_tensor(agg.answered)
    ys = torch.as_tensor(agg.labels[agg.answered], dtype=torch.long)
    n_pool = len(data.public) - cfg.validation  # the held-out public images are never queried nor trained on
    xs = inputs("public", s_features)[:n_pool]
    xq = xs[:cfg.queries]
    unlabelled = torch.cat([xq[~keep], xs[cfg.queries:]])
    student, used = train_student(xq[keep], ys, cfg, unlabelled, size=data.size)
    val_acc = (_accuracy(student, inputs("public", s_features)[n_pool:], data.public.labels[n_pool:], s_features)
               if cfg.validation else None)
    truth = data.public.labels[:cfg.queries].numpy()
    test_votes = vote_counts(_predict(teachers, inputs("test", on_features), on_features), num_classes)
    y_test = data.test.labels
    result = PATEResult(
        config=cfg, student=student,
        student_accuracy=_accuracy(student, inputs("test", s_features), y_test, s_features),
        teacher_accuracy=[float((p == y_test).float().mean())
                          for p in _predict(teachers, inputs("test", on_features), on_features)],
        ensemble_accuracy=float((test_votes.argmax(1) == y_test.numpy()).mean()),
        label_accuracy=float((agg.labels[agg.answered] == truth[agg.answered]).mean()) if agg.answered.any() else 0.0,
        answered=int(agg.answered.sum()), pseudo_labelled=used, epsilon=an.epsilon(),
        epsilon_classic=an.epsilon(conversion="classic"), epsilon_independent=an.epsilon(dependent=False),
        order=an.order(), analysis=an, counts=counts, labels=agg.labels,
        n={"private": len(data.private), "public": n_pool, "validation": cfg.validation, "test": len(data.test),
           "per_teacher": len(data.private) // cfg.teachers},
        seconds=time.perf_counter() - t0, validation_accuracy=val_acc)
    if progress is not None:
        progress(total, total, {"stage": "student", "accuracy": result.student_accuracy})
    return result
