"""Every pretraining setting in one place: dataclasses, YAML loading, ``key=value`` overrides, validation.

The defaults are the authors' ImageNet recipe (docs/method.md), except for the departures that
docs/method.md lists, each of which is a key here that can bring the authors' behaviour back;
``configs/pretrain/demo.yaml`` shrinks them for a CPU run on the bundled demo scenes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .resnet_depths import DEPTHS
from .schedules import SCHEDULES

METHODS = ("r2o", "detcon", "byol")
SLIC_INPUTS = ("uint8", "normalized")
SUPERPIXEL_POOLINGS = ("exact", "official")
LABEL_MAPS = ("nearest", "official")
KMEANS_INITS = ("greedy", "single")
KMEANS_CUDA_GRAPHS = ("auto", "off")
LARS_KINDS = ("official", "timm")
EXCLUDE_RULES = ("module_type", "official_names")
BLURS = ("opencv", "pil")


def cache_root() -> str:
    """Where r2o keeps what it can recompute: ``$R2O_CACHE_DIR``, default ``~/.cache/r2o``."""
    return os.environ.get("R2O_CACHE_DIR") or "~/.cache/r2o"


def default_superpixel_cache() -> str:
    return str(Path(cache_root()) / "superpixels")


class ConfigError(ValueError):
    """A setting is unknown or has a value that cannot work; the message says which and why."""


@dataclass
class DataConfig:
    root: str = ""  # image folder (recursive) or a text file with one image path per line
    # with data.root empty: write the bundled demo scenes to demo_dir if missing and train on them
    # (a given data.root is what is trained on; the demo is then neither written nor read)
    demo: bool = False
    demo_dir: str = "data/demo"  # where the demo scenes live (the run trains on demo_dir/images)
    view_size: int = 224  # crop size of the two augmented views (layer4 map is view_size/32)
    raw_size: int = 224  # size of the un-augmented raw view that feeds the region prior
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    n_segments: int = 100  # SLIC segments on the raw view
    slic_compactness: float = 10.0
    # departure: SLIC on the uint8 picture; "normalized": on the ImageNet-normalised float raw view (authors)
    slic_input: str = "uint8"
    flip_prob: float = 0.5  # departure: the authors' code flips both views always (a bug), i.e. 1.0
    num_examples: int = -1  # images per epoch for --dry-run without listing data.root (-1: list it)
    # SLIC label maps on disk, shared by all runs and datasets ("" disables it): under the cache root
    # $R2O_CACHE_DIR (default ~/.cache/r2o), as the wheel cache
    superpixel_cache: str = field(default_factory=default_superpixel_cache)
    min_image_size: int = 16  # smaller images are skipped with a warning
    num_workers: int = 4
    pin_memory: bool = True
    augment_on: str = "cpu"  # cpu | device: BYOL's colour/blur/solarize in the loader workers or in the step
    # the photometric augmentation's distributions (defaults: BYOL's; data/photometric.py PhotometricSpec);
    # a factor is drawn from U(1 - s, 1 + s) for a jitter strength s (hue: a shift from U(-s, s))
    color_jitter_p: float = 0.8
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)  # brightness, contrast, saturation, hue
    grayscale_p: float = 0.2
    blur_p: tuple[float, float] = (1.0, 0.1)  # view 1, view 2
    solarize_p: tuple[float, float] = (0.0, 0.2)  # view 1, view 2
    # the CPU path's blur: "opencv" (the authors': cv2.GaussianBlur, 23 taps); "pil": PIL's box-blur
    # approximation (our earlier default). The device path always runs the 23-tap Gaussian in float.
    blur: str = "opencv"


@dataclass
class ModelConfig:
    method: str = "r2o"  # r2o | detcon | byol
    depth: int = 50
    projector_hidden: int = 4096
    projector_out: int = 256
    predictor_hidden: int = 4096
    kmeans_iters: int = 200  # at most this many Lloyd iterations after k-means++ init (authors: 200)
    kmeans_until_converged: bool = True  # stop when the assignment repeats; false: exactly kmeans_iters
    # k-means++ seeding: "greedy" (the authors', scikit-learn's: 2 + ln K candidates per centre, the one
    # lowering the inertia most is kept); "single": one D²-sampled candidate (our earlier default)
    kmeans_init: str = "greedy"
    # "auto": on a GPU the k-means's seeding and blocks of 8 Lloyd iterations replay as CUDA graphs over
    # points padded to a fixed count (exact; checked against eager on first capture, eager after a
    # failure); "off": eager kernels. A CPU always runs eagerly. (model/kmeans_graphs.py)
    kmeans_cuda_graphs: str = "auto"
    superpixel_only_above: int = 128  # K above this: no refinement, the superpixels are the masks
    mask_area_threshold: float = 1e-3  # a mask counts if its roi-aligned mass is above this in both views
    pool_area_floor: float = 1.0  # mask pooling divides by max(area, this) (authors: 1; 0: true mean)
    # departure: "exact" pools c4 by exact pixel counts over the superpixels an image has; "official":
    # bilinear 14x14 one-hot, max(area,1), every slot clustered (zero vectors included)
    superpixel_pooling: str = "exact"
    # departure: "nearest" resize of the label map; "official": bilinear x id, summed, truncated
    # (bilinear + argmax on the superpixels-only path)
    label_map: str = "nearest"
    # projectors and predictor on the non-empty mask rows plus one zero row counted n_zero times in their
    # BatchNorm: the numbers of running them on all 2B·K rows, at a fraction of the cost; false: all rows
    sparse_heads: bool = True


@dataclass
class CurriculumConfig:
    schedule: str = "cosine"  # cosine | linear | piecewise | constant
    k_start: int = 128
    k_end: int = 4
    start_epoch: int = 0  # K = k_start up to this epoch (epochs are numbered 1..E)
    epochs: int = -1  # the epoch from which K = k_end; -1: the last epoch of the run
    milestones: list[list[int]] = field(default_factory=list)  # piecewise: [[epoch, K], ...]


@dataclass
class OptimConfig:
    base_lr: float = 0.3  # max lr = base_lr * global_batch / 256 (* K / 16 with lr_k_scaling)
    weight_decay: float = 1e-6
    momentum: float = 0.9
    trust_coefficient: float = 1e-3  # LARS eta
    warmup_epochs: float = 3.0  # warm-up steps = warmup_epochs * N // global_batch
    lr_k_scaling: bool = True  # the published "lr fix": multiply the lr by K/16
    base_tau: float = 0.99  # target EMA momentum at step 0, cosine to 1
    optimizer: str = "lars"  # lars | sgd (sgd: same groups, no layer-wise adaptation)
    # "official": the authors' LARS (lr inside the momentum buffer); "timm": timm's Lars (w -= lr * buffer)
    lars: str = "official"
    # no decay/adaptation for: "module_type" (biases, every norm layer); "official_names": the authors'
    # name rule, which leaves the stem BN weight in the LARS group
    exclude: str = "module_type"


@dataclass
class TrainConfig:
    epochs: int = 300
    batch_size: int = 32  # per process
    seed: int = 0
    output_dir: str = "runs/r2o"
    log_every: int = 10
    image_log_every: int = 500  # TensorBoard mask pictures
    checkpoint_every: int = 1000  # steps; a checkpoint is also written at the end of every epoch
    amp: str = "none"  # none | bf16 (GPU or CPU autocast) | fp16 (GPU only, with a GradScaler)
    channels_last: bool = False  # NHWC activations: faster convolutions on GPUs and on oneDNN CPUs
    sync_bn: bool = True  # SyncBN when world size > 1 on GPU
    device: str = "auto"  # auto | cpu | cuda
    max_steps: int = -1  # stop after this many steps in total (-1: all epochs)
    regions_png: bool = True  # write regions.png at the end
    compile: bool = False  # torch.compile the encoders in place (meant for GPU; first steps compile)
    # on these signals: finish the step, checkpoint, exit (0 under torchrun, 75 alone); [] to turn off.
    # Ctrl-C (SIGINT) always does the same, exiting 130 (a second Ctrl-C exits at once)
    preempt_signals: list[str] = field(default_factory=lambda: ["SIGTERM", "SIGUSR1"])
    keep_every_epochs: int = 100  # keep checkpoints/epoch_NNNN.pth every this many epochs (0: only last.pth)


@dataclass
class EvalConfig:
    """Online evaluation during pretraining (r2o_pretrain/eval/online.py); docs/pretraining.md."""

    every_epochs: int = 0  # evaluate at the end of every this many epochs and at the end of the run (0: off)
    # fg/bg masks in a layout tools/eval_unsup_seg.py reads: plain images/ + masks/ folders, or CUB-200-2011
    # (eval.images=CUB_200_2011/images eval.masks=segmentations); "demo": the demo scenes' fg_masks when
    # training on the demo (data.demo=true, data.root empty), otherwise no evaluation
    images: str = ""
    masks: str = ""
    split: str = "test"  # CUB split: test | train | all
    max_images: int = 1000  # at most this many pairs, evenly spaced over the sorted listing (0: all)
    size: int = 224  # images are resized to size x size
    n_segments: int = 100  # SLIC segments per image
    pictures: int = 4  # validation images in the TensorBoard picture (0: none)
    # kNN top-1 on pooled c5 features: labelled folders in the ImageNet train/<class>/ layout ("": no kNN)
    knn_train: str = ""
    knn_val: str = ""
    knn_k: int = 20
    knn_temperature: float = 0.07
    knn_max_images: int = 10000  # per folder, evenly spaced (0: all)
    chunk: int = 16  # images per rank between two checks for a preemption signal


@dataclass
class DebugConfig:
    kill_at_step: int = -1  # fault injection for resume tests: SIGKILL the process after this step


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    """Tuples become lists so that the dict survives YAML and ``torch.load(weights_only=True)``."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(section: str, name: str, current: Any, value: Any) -> Any:
    where = f"{section}.{name}"
    if isinstance(value, str) and isinstance(current, (int, float)) and not isinstance(current, bool):
        try:  # YAML 1.1 reads "1e-3" as a string
            value = float(value) if isinstance(current, float) else int(value)
        except ValueError:
            pass
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if isinstance(current, str):
        if isinstance(value, str):
            return value
        if value is None:
            return ""
        if isinstance(value, bool):  # YAML 1.1 reads off/on (no/yes) as booleans: model.kmeans_cuda_graphs=off
            return "on" if value else "off"
        return str(value)
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(current):
            raise ConfigError(f"{where} must be a list of {len(current)} numbers, got {value!r}")
        return tuple(float(v) for v in value)
    if isinstance(current, list):
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return value
    return value


def apply_dict(cfg: Config, values: dict[str, Any], source: str = "config") -> Config:
    """Set the fields named in ``values`` ({section: {key: value}}); unknown names are errors."""
    for section, entries in values.items():
        if not hasattr(cfg, section) or section.startswith("_"):
            raise ConfigError(f"{source}: unknown section '{section}' (sections: {', '.join(_sections())})")
        if not isinstance(entries, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping, got {entries!r}")
        sub = getattr(cfg, section)
        names = {f.name for f in dataclasses.fields(sub)}
        for name, value in entries.items():
            if name not in names:
                raise ConfigError(
                    f"{source}: unknown key '{section}.{name}' (keys of {section}: {', '.join(sorted(names))})"
                )
            setattr(sub, name, _coerce(section, name, getattr(sub, name), value))
    return cfg


def _sections() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


def parse_override(text: str) -> dict[str, Any]:
    """``'train.epochs=5'`` → ``{'train': {'epochs': 5}}``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form section.key=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"override '{text}': the key must be section.key, e.g. train.epochs=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': cannot read the value: {exc}") from exc
    return {parts[0]: {parts[1]: value}}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The {section: {key: value}} mapping of a YAML settings file (not yet applied or validated)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(values).__name__}")
    return values


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file (if any), then ``key=value`` overrides; validated."""
    values = read_config_file(path) if path is not None else {}
    return config_from_dict(values, overrides, source=str(path))


def config_from_dict(
    values: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), source: str = "config"
) -> Config:
    """Defaults, then ``values`` ({section: {key: value}}, e.g. a checkpoint's saved settings), then
    ``key=value`` overrides; validated."""
    cfg = apply_dict(Config(), values, source=source)
    for text in overrides:
        apply_dict(cfg, parse_override(text), source=f"override '{text}'")
    validate(cfg)
    return cfg


def known_settings(values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``values`` without the sections and keys this version does not have (a run saved by another r2o),
    and the ``section.key`` names left out."""
    base, kept, dropped = Config(), {}, []
    for section, entries in values.items():
        sub = getattr(base, section, None) if not str(section).startswith("_") else None
        if sub is None or not dataclasses.is_dataclass(sub) or not isinstance(entries, dict):
            dropped.append(str(section))
            continue
        names = {f.name for f in dataclasses.fields(sub)}
        kept[section] = {k: v for k, v in entries.items() if k in names}
        dropped += [f"{section}.{k}" for k in entries if k not in names]
    return kept, dropped


def validate(cfg: Config) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    d, m, c, o, t = cfg.data, cfg.model, cfg.curriculum, cfg.optim, cfg.train
    need(m.method in METHODS, f"model.method must be one of {METHODS}, got '{m.method}'")
    need(m.depth in DEPTHS, f"model.depth must be one of {DEPTHS}, got {m.depth}")
    need(c.schedule in SCHEDULES, f"curriculum.schedule must be one of {SCHEDULES}, got '{c.schedule}'")
    need(c.k_start >= 1 and c.k_end >= 1, "curriculum.k_start and k_end must be >= 1")
    if c.schedule == "piecewise":
        need(
            bool(c.milestones) and all(len(p) == 2 for p in c.milestones),
            "curriculum.milestones must be a non-empty list of [epoch, K] pairs for the piecewise schedule",
        )
        need(c.milestones[0][0] == 0, "curriculum.milestones must start at epoch 0")
    need(d.view_size >= 32 and d.view_size % 32 == 0, f"data.view_size must be a multiple of 32, got {d.view_size}")
    need(d.raw_size >= 32 and d.raw_size % 16 == 0, f"data.raw_size must be a multiple of 16, got {d.raw_size}")
    need(d.n_segments >= 1, "data.n_segments must be >= 1")
    need(0 < d.crop_scale[0] <= d.crop_scale[1] <= 1, f"data.crop_scale must be 0 < lo <= hi <= 1, got {d.crop_scale}")
    need(d.num_workers >= 0, "data.num_workers must be >= 0")
    need(t.batch_size >= 2, f"train.batch_size must be >= 2 (BatchNorm needs it), got {t.batch_size}")
    need(t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}")
    need(t.amp in ("none", "bf16", "fp16"), f"train.amp must be none, bf16 or fp16, got '{t.amp}'")
    need(t.device in ("auto", "cpu", "cuda"), f"train.device must be auto, cpu or cuda, got '{t.device}'")
    need(t.log_every >= 1 and t.checkpoint_every >= 1, "train.log_every and checkpoint_every must be >= 1")
    need(t.keep_every_epochs >= 0, f"train.keep_every_epochs must be >= 0, got {t.keep_every_epochs}")
    bad = [n for n in t.preempt_signals if str(n) in ("SIGKILL", "SIGSTOP") or not _is_signal_name(str(n))]
    need(
        not bad, f"train.preempt_signals: {bad} cannot be caught; name signals like [SIGTERM, SIGUSR1] (or [] for none)"
    )
    need(o.optimizer in ("lars", "sgd"), f"optim.optimizer must be lars or sgd, got '{o.optimizer}'")
    need(o.base_lr > 0, f"optim.base_lr must be > 0, got {o.base_lr}")
    need(0 <= o.base_tau <= 1, f"optim.base_tau must be in [0, 1], got {o.base_tau}")
    need(o.warmup_epochs >= 0, "optim.warmup_epochs must be >= 0")
    need(m.mask_area_threshold >= 0, "model.mask_area_threshold must be >= 0")
    need(m.kmeans_iters >= 1, "model.kmeans_iters must be >= 1")
    need(m.pool_area_floor >= 0, "model.pool_area_floor must be >= 0")
    need(d.slic_input in SLIC_INPUTS, f"data.slic_input must be one of {SLIC_INPUTS}, got '{d.slic_input}'")
    need(0 <= d.flip_prob <= 1, f"data.flip_prob must be in [0, 1], got {d.flip_prob}")
    for name in ("color_jitter_p", "grayscale_p"):
        need(0 <= getattr(d, name) <= 1, f"data.{name} must be in [0, 1], got {getattr(d, name)}")
    for name in ("blur_p", "solarize_p"):
        need(
            all(0 <= p <= 1 for p in getattr(d, name)),
            f"data.{name} must be two probabilities [view 1, view 2] in [0, 1], got {list(getattr(d, name))}",
        )
    need(
        all(0 <= s <= 1 for s in d.color_jitter[:3]) and 0 <= d.color_jitter[3] <= 0.5,
        "data.color_jitter must be [brightness, contrast, saturation, hue] strengths, the first three in [0, 1] and"
        f" hue in [0, 0.5] (torchvision ColorJitter's), got {list(d.color_jitter)}",
    )
    need(
        m.superpixel_pooling in SUPERPIXEL_POOLINGS,
        f"model.superpixel_pooling must be one of {SUPERPIXEL_POOLINGS}, got '{m.superpixel_pooling}'",
    )
    need(m.label_map in LABEL_MAPS, f"model.label_map must be one of {LABEL_MAPS}, got '{m.label_map}'")
    need(m.kmeans_init in KMEANS_INITS, f"model.kmeans_init must be one of {KMEANS_INITS}, got '{m.kmeans_init}'")
    need(
        m.kmeans_cuda_graphs in KMEANS_CUDA_GRAPHS,
        f"model.kmeans_cuda_graphs must be one of {KMEANS_CUDA_GRAPHS}, got '{m.kmeans_cuda_graphs}'",
    )
    need(o.lars in LARS_KINDS, f"optim.lars must be one of {LARS_KINDS}, got '{o.lars}'")
    need(o.exclude in EXCLUDE_RULES, f"optim.exclude must be one of {EXCLUDE_RULES}, got '{o.exclude}'")
    need(d.blur in BLURS, f"data.blur must be one of {BLURS}, got '{d.blur}'")
    need(
        d.blur == "opencv" or d.augment_on == "cpu",
        f"data.blur={d.blur} exists only on the CPU path; data.augment_on=device always blurs with the 23-tap Gaussian",
    )
    _validate_eval(cfg.eval, need)


def _validate_eval(e: EvalConfig, need) -> None:
    """Settings only; the folders are checked at the start of training (r2o_pretrain/eval/online.py)."""
    need(e.every_epochs >= 0, f"eval.every_epochs must be >= 0 (0: off), got {e.every_epochs}")
    need(e.split in ("test", "train", "all"), f"eval.split must be test, train or all, got '{e.split}'")
    need(e.max_images >= 0 and e.knn_max_images >= 0, "eval.max_images and eval.knn_max_images must be >= 0")
    need(e.size >= 32, f"eval.size must be >= 32, got {e.size}")
    need(e.n_segments >= 2, f"eval.n_segments must be >= 2, got {e.n_segments}")
    need(e.pictures >= 0 and e.chunk >= 1, "eval.pictures must be >= 0 and eval.chunk >= 1")
    need(e.knn_k >= 1, f"eval.knn_k must be >= 1, got {e.knn_k}")
    need(e.knn_temperature > 0, f"eval.knn_temperature must be > 0, got {e.knn_temperature}")
    need(bool(e.knn_train) == bool(e.knn_val), "eval.knn_train and eval.knn_val must be given together")
    need(
        e.every_epochs == 0 or e.images == "demo" or bool(e.images) == bool(e.masks),
        "eval.images and eval.masks must be given together",
    )


def _is_signal_name(name: str) -> bool:
    return name.startswith("SIG") and isinstance(getattr(signal, name, None), signal.Signals)


def describe_keys(config_file: str | Path | None = None) -> str:
    """A one-line-per-key listing with the built-in defaults, for ``--help``; with ``config_file``, each value
    that file sets otherwise follows as ``(<file name>: value)``."""
    base, given = Config(), load_config(config_file) if config_file is not None else None
    lines = []
    for f in dataclasses.fields(Config):
        sub, sub_given = getattr(base, f.name), getattr(given, f.name) if given is not None else None
        for g in dataclasses.fields(sub):
            value = _plain(getattr(sub, g.name))
            line = f"  {f.name}.{g.name} = {value!r}"
            if sub_given is not None and _plain(getattr(sub_given, g.name)) != value:
                line += f"   ({Path(config_file).name}: {_plain(getattr(sub_given, g.name))!r})"
            lines.append(line)
    return "\n".join(lines)
