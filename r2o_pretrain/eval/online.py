"""Online evaluation during pretraining: unsupervised object segmentation (and kNN top-1) of the online
encoder at the end of every ``eval.every_epochs`` epochs and at the end of the run.

The segmentation scores come from the functions ``tools/eval_unsup_seg.py`` runs (``unsup_seg.prepare``,
``segment``, ``image_scores``, ``EvalResult.from_image_scores``), so an online number equals the tool's
number on the checkpoint of the same step. Under torchrun the work is **sharded**: rank r takes images
r, r + W, r + 2W, ... of the (fixed, evenly spaced) validation list, and one ``all_gather`` brings every
rank's per-image scores together (rank 0 logs them). Every rank's share is within one image of the others',
so no rank idles while another scores; rank 0 alone draws the picture (77 ms for 4 images on an H200) while
the others wait at the next collective. The only waits are these collectives, which fall under the
process group's timeout (torch's default: 30 min for gloo, 10 min for NCCL). Between chunks of
``eval.chunk`` images the ranks check for a preemption signal (the same all-reduce as after each step);
an evaluation cut short logs nothing, and the resumed run (``--resume auto``) does it again from the
checkpoint of that step, which was written before the evaluation started.

``check_eval_data`` runs at start-up on every rank: missing folders, missing masks, files that do not decode
(every image/mask pair is decoded in full; the kNN folders, up to 2 x eval.knn_max_images files, by their
headers), masks of another size, an empty set and a kNN folder with images of fewer than two classes are
``ConfigError``s naming the file and the setting, before the first step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn

from ..config import Config, ConfigError, EvalConfig
from ..data.device_augment import to_input_tensor
from ..data.folder import DECODE_ERRORS, BadImageError
from ..engine.distributed import DistInfo
from ..model.encoder import ResNetEncoder
from ..viz import refined_label_maps, region_grid
from .knn import (
    LabelledFolder,
    LabelledFolderError,
    knn_predict,
    list_labelled,
    load_image,
    pooled_features,
    subset,
    top1,
)
from .sampling import evenly_spaced
from .unsup_seg import (
    KMEANS_ITERS,
    EvalDataError,
    EvalResult,
    Pair,
    check_pair,
    choose_foreground,
    image_scores,
    list_pairs,
    prepare_arrays,
    segment,
)

logger = logging.getLogger("r2o")

# The cost of one evaluated image in trained images of the ImageNet recipe (R2O ResNet-50 step, views and raw
# view 224 px, K=64, batch 8: 4.88 s per image), measured on this project's 2-core CPU (docs/pretraining.md,
# "Online evaluation"): ResNet-50 c4 + k-means (K=2) + scores at 224 px, 100 segments, 1.26 s (SLIC cached after the
# first evaluation; the first adds decoding + SLIC, 0.08 s); the colour row 0.03 s; a kNN feature 0.81 s.
COST_SEGMENT = 0.259
COST_PREPARE = 0.016
COST_COLOUR = 0.006
COST_KNN = 0.166
# The same on one GPU (NVIDIA H200, ResNet-50 bf16 + channels_last step at batch 128: 1.23 ms per trained image;
# an evaluated image 10.4 ms; benchmarks/online_eval_cost.py): the batch-1 forward and the CPU-side k-means
# weigh more against a fast step.
COST_SEGMENT_GPU = 8.44
# The first evaluation of a process also prepares the pairs (decoding + SLIC on the CPU, then cached) and, once
# per run, scores the random-init and colour rows: 58-72 ms more per pair in the trainer on the H200 (first
# evaluations of 60 pairs: 4.0-4.8 s against 0.46-0.55 s), 210 ms in the benchmark's (with CUDA warm-up).
COST_FIRST_GPU = (47, 170)


@dataclass
class EvalData:
    """The validated evaluation sets (the same on every rank)."""

    pairs: list[Pair]
    images: str  # the folders, as resolved (eval.images=demo → the demo's fg_masks)
    masks: str
    knn_train: LabelledFolder | None = None
    knn_val: LabelledFolder | None = None


DEMO_ONLY = (
    "eval.images=demo evaluates on the demo scenes only when training on them (data.root is set): "
    "no online evaluation; give eval.images=... eval.masks=... to evaluate"
)


DEMO_NOTE = (
    "what the demo's evaluation can show: its {steps} steps run the whole pipeline (curve, masks, checkpoint) "
    "but are far too few to learn, so its mIoU stays near the random-init row, and the colour row is what the "
    "scenes' colours alone give away; runs long enough to rise above random init are in docs/benchmarks.md "
    "('Online curves under the fidelity-II step')"
)


def demo_note(cfg: Config, total_steps: int) -> str | None:
    """The one line that says what the online evaluation of the demo (``eval.images=demo`` on the demo
    scenes) can and cannot show at ``total_steps`` steps; None for any other evaluation."""
    if cfg.eval.every_epochs == 0 or cfg.eval.images != "demo" or demo_off(cfg):
        return None
    return DEMO_NOTE.format(steps=total_steps)


def demo_off(cfg: Config) -> bool:
    """True when ``eval.images=demo`` turns the evaluation off: the run does not train on the demo scenes."""
    return cfg.eval.images == "demo" and not (cfg.data.demo and not cfg.data.root)


def resolve_folders(cfg: Config) -> tuple[str, str] | None:
    """(images, masks) to evaluate on, or None when the evaluation is off. ``eval.images=demo`` means the
    demo scenes' fg masks when training on the demo (data.demo=true, data.root empty)."""
    e = cfg.eval
    if e.every_epochs == 0:
        return None
    if e.images == "demo":
        if not demo_off(cfg):
            fg = Path(cfg.data.demo_dir) / "fg_masks"
            return str(fg / "images"), str(fg / "masks")
        logger.info(DEMO_ONLY)
        return None
    if not e.images or not e.masks:
        raise ConfigError(
            f"eval.every_epochs={e.every_epochs} needs eval.images and eval.masks (a plain images/ + masks/ pair "
            "or CUB: eval.images=CUB_200_2011/images eval.masks=segmentations), or eval.every_epochs=0"
        )
    return e.images, e.masks


def check_eval_data(cfg: Config) -> EvalData | None:
    """The evaluation sets of ``cfg`` after every check, or None when the evaluation is off; ConfigError
    naming the file and the setting otherwise. Decodes every image/mask pair it keeps (eval.max_images)."""
    folders = resolve_folders(cfg)
    if folders is None:
        return None
    e = cfg.eval
    images, masks = folders
    where = f"eval.images={images} eval.masks={masks}"
    try:
        listing = list_pairs(images, masks, e.split)
    except EvalDataError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if listing.problems:
        shown = "; ".join(listing.problems[:5])
        more = f" (and {len(listing.problems) - 5} more)" if len(listing.problems) > 5 else ""
        raise ConfigError(f"{where}: {len(listing.problems)} problem(s): {shown}{more}")
    if not listing.pairs:
        raise ConfigError(f"{where}: no image/mask pairs (split {e.split}): the online evaluation set is empty")
    pairs = [listing.pairs[i] for i in evenly_spaced(len(listing.pairs), e.max_images)]
    empty = []
    for pair in pairs:
        try:
            if not check_pair(pair).any():
                empty.append(pair.mask)
        except EvalDataError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    if empty:  # a format read otherwise than meant scores every image as all background
        logger.warning(
            "%s: %d of %d masks have no foreground as read (first: %s); check their format against "
            "docs/pretraining.md, Online evaluation",
            where,
            len(empty),
            len(pairs),
            empty[0],
        )
    data = EvalData(pairs, images, masks)
    if e.knn_train:
        data.knn_train, data.knn_val = _check_knn(e)
    return data


def _check_knn(e: EvalConfig) -> tuple[LabelledFolder, LabelledFolder]:
    try:
        bank = subset(list_labelled(e.knn_train), e.knn_max_images)
    except LabelledFolderError as exc:
        raise ConfigError(f"eval.knn_train={e.knn_train}: {exc}") from exc
    with_images = sorted({bank.classes[i] for i in bank.labels})
    if len(with_images) < 2:
        raise ConfigError(
            f"eval.knn_train={e.knn_train}: images of {len(with_images)} class(es) ({', '.join(with_images)}; "
            f"{len(bank.classes)} class folder(s)"
            + (f", at most eval.knn_max_images={e.knn_max_images} images" if e.knn_max_images else "")
            + "); kNN accuracy needs images of at least 2 classes"
        )
    try:
        val = subset(list_labelled(e.knn_val, bank.classes), e.knn_max_images)
    except LabelledFolderError as exc:
        raise ConfigError(f"eval.knn_val={e.knn_val}: {exc}") from exc
    for setting, folder in (("eval.knn_train", bank), ("eval.knn_val", val)):
        for f in folder.files:
            try:
                with Image.open(f):
                    pass
            except DECODE_ERRORS as exc:
                raise ConfigError(f"{setting}: cannot read {f} ({type(exc).__name__}: {exc})") from exc
    return bank, val


def num_evaluations(epochs: int, every_epochs: int) -> int:
    """Evaluations in a run of ``epochs`` epochs: every ``every_epochs`` epochs and at the end."""
    if every_epochs <= 0:
        return 0
    return epochs // every_epochs + (1 if epochs % every_epochs else 0)


def describe_cost(cfg: Config, num_examples: int, data: EvalData | None) -> str:
    """The --dry-run lines: how often, how many images, and the estimated share of the training time.
    ``data``: the listed sets (None when the folders could not be listed: the settings' caps are used).

    The work is sharded over the ranks, so the share does not depend on the world size: one evaluation
    costs n * COST_SEGMENT trained images (+ kNN), an epoch trains num_examples."""
    e, t = cfg.eval, cfg.train
    if e.every_epochs == 0:
        return "online evaluation: off (eval.every_epochs=0)"
    if demo_off(cfg):
        return f"online evaluation: off ({DEMO_ONLY})"
    n = len(data.pairs) if data is not None else e.max_images
    if n == 0:
        return f"online evaluation: every {e.every_epochs} epoch(s), all pairs of eval.images (not listed here)"
    evals = num_evaluations(t.epochs, e.every_epochs)
    if data is not None and data.knn_train is not None and data.knn_val is not None:
        knn = len(data.knn_train.files) + len(data.knn_val.files)
        knn_images = f"{len(data.knn_train.files):,} bank and {len(data.knn_val.files):,} val images"
    else:  # not listed: at most the cap of each folder (0: all, unknown here)
        knn = 2 * e.knn_max_images if e.knn_train else 0
        knn_images = f"at most {e.knn_max_images:,} bank and val images each" if knn else "all bank and val images"
    per_eval = n * COST_SEGMENT + knn * COST_KNN
    once = n * (COST_PREPARE + COST_SEGMENT + COST_COLOUR)  # SLIC of the first evaluation, random and colour rows
    epoch = max(num_examples, 1)
    listed = "" if data is not None else " (at most: the folders were not listed)"
    return (
        f"online evaluation: every {e.every_epochs} epoch(s) and at the end: {evals} evaluations of {n} image/mask "
        f"pairs{listed} at {e.size} px ({e.n_segments} segments), sharded over the ranks"
        + (f", kNN top-1 with {knn_images}" if e.knn_train else "")
        + "; random-init and colour rows once\n"
        f"  estimated cost: {per_eval:,.0f} trained-image equivalents per evaluation = {100 * per_eval / epoch:.3f}% "
        f"of an epoch of {num_examples:,} images ({100 * per_eval / (epoch * e.every_epochs):.3f}% averaged over "
        f"the {e.every_epochs} epoch(s) between two), +{once:,.0f} once; whole run "
        f"{100 * (evals * per_eval + once) / (epoch * t.epochs):.3f}% (per-image costs measured on CPU, "
        "docs/pretraining.md, Online evaluation)\n"
        f"  on a GPU (measured on an H200): {n * COST_SEGMENT_GPU:,.0f} trained-image equivalents per evaluation = "
        f"{100 * n * COST_SEGMENT_GPU / epoch:.3f}% of an epoch"
        + (
            " + the kNN features (not measured on a GPU: mostly JPEG decoding, one core per rank)"
            if e.knn_train
            else ""
        )
        + "; "
        f"the first of each process (at the start, after every requeue) adds {100 * n * COST_FIRST_GPU[0] / epoch:.2f}"
        f"-{100 * n * COST_FIRST_GPU[1] / epoch:.2f}% of an epoch (SLIC of the pairs, the random/colour rows once)"
    )


# ----------------------------------------------------------------------------- collectives
def gather_rows(rows: dict[int, Sequence[float]], n: int, width: int, info: DistInfo) -> list[Sequence[float] | None]:
    """Per-image rows {index: values} of this rank's share → the rows of all ``n`` images in order (None
    for an image no rank scored). One ``all_gather`` under distribution; every rank gets the result."""
    if not info.distributed:
        return [rows.get(i) for i in range(n)]
    per_rank = -(-n // info.world_size)
    local = torch.full((per_rank, width + 1), float("nan"), dtype=torch.float64)
    for j, (i, values) in enumerate(sorted(rows.items())):
        local[j, 0] = i
        local[j, 1:] = torch.as_tensor(values, dtype=torch.float64)
    local = local.to(info.device)
    parts = [torch.empty_like(local) for _ in range(info.world_size)]
    dist.all_gather(parts, local)
    out: list[Sequence[float] | None] = [None] * n
    for row in torch.cat(parts).cpu():
        if not torch.isnan(row[0]):
            out[int(row[0])] = row[1:].tolist()
    return out


def sync_buffers(module: nn.Module, info: DistInfo) -> None:
    """Rank 0's BatchNorm statistics on every rank (DDP broadcasts them at the next forward anyway), so
    that every shard is scored by the same network: the one rank 0 checkpoints."""
    if info.distributed:
        for buf in module.buffers():
            dist.broadcast(buf, 0)


# ----------------------------------------------------------------------------- the evaluator
class OnlineEvaluator:
    """Holds the validated sets, this rank's share of them (prepared once, then cached) and the
    once-per-run rows. ``run`` is a collective: call it on every rank at the same step."""

    def __init__(self, data: EvalData, e: EvalConfig, info: DistInfo, seed: int, depth: int) -> None:
        self.data, self.e, self.info, self.seed, self.depth = data, e, info, seed, depth
        n = len(data.pairs)
        self.share = list(range(info.rank, n, info.world_size))
        self.per_rank = -(-n // info.world_size)
        self.cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray] | str] = {}
        self.knn_bad: set[Path] = set()  # kNN files that did not decode (warned once, then skipped)
        self.baselines_done = False

    def _sample(self, i: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray] | None:
        """``unsup_seg.prepare`` of pair i (cached compactly: uint8 image, int32 superpixels)."""
        if i not in self.cache:
            try:
                rgb, sp, gt = prepare_arrays(self.data.pairs[i], self.e.size, self.e.n_segments)
                self.cache[i] = (rgb, sp.astype(np.int32), gt)
            except (EvalDataError, OSError) as exc:  # checked at start-up; changed on disk since
                logger.warning("online evaluation: skipped: %s", exc)
                self.cache[i] = str(exc)
        entry = self.cache[i]
        if isinstance(entry, str):
            return None
        rgb, sp, gt = entry
        return to_input_tensor(rgb), sp.astype(np.int64), gt

    def _score(self, encoder: ResNetEncoder | None, should_stop: Callable[[], bool]) -> tuple[EvalResult, int] | None:
        """This rank's share scored in chunks (a preemption check between chunks), gathered in order."""
        rows: dict[int, tuple[float, float, float, float]] = {}
        for start in range(0, self.per_rank, self.e.chunk):
            for i in self.share[start : start + self.e.chunk]:
                sample = self._sample(i)
                if sample is not None:
                    x, sp, gt = sample
                    rows[i] = image_scores(segment(encoder, x, sp), gt)
            if should_stop():
                return None
        ordered = gather_rows(rows, len(self.data.pairs), 4, self.info)
        kept = [r for r in ordered if r is not None]
        return EvalResult.from_image_scores(kept, []), len(ordered) - len(kept)

    @torch.no_grad()
    def _knn(self, encoder: ResNetEncoder) -> tuple[float, int]:
        """(top-1, kNN images no rank could use) of the bank and val folders' features."""
        features, skipped = [], 0
        for folder in (self.data.knn_train, self.data.knn_val):
            assert folder is not None
            n = len(folder.files)
            rows = {}
            mine = list(range(self.info.rank, n, self.info.world_size))
            for start in range(0, len(mine), 64):
                loaded = {}
                for i in mine[start : start + 64]:
                    if folder.files[i] in self.knn_bad:
                        continue
                    try:
                        loaded[i] = load_image(folder.files[i], self.e.size)
                    except BadImageError as exc:  # checked at start-up (headers); does not decode
                        logger.warning("online evaluation: kNN: skipped (at every evaluation from now on): %s", exc)
                        self.knn_bad.add(folder.files[i])
                if loaded:
                    for i, f in zip(loaded, pooled_features(encoder, torch.stack(list(loaded.values())))):
                        rows[i] = f.tolist()
            ordered = gather_rows(rows, n, encoder.c5_channels, self.info)
            kept = [i for i, row in enumerate(ordered) if row is not None]
            skipped += n - len(kept)
            features.append(
                (torch.tensor([ordered[i] for i in kept], dtype=torch.float32), torch.tensor(folder.labels)[kept])
            )
        (bank, bank_labels), (val, val_labels) = features
        pred = knn_predict(
            bank, bank_labels, val, len(self.data.knn_train.classes), self.e.knn_k, self.e.knn_temperature
        )
        return top1(pred, val_labels), skipped

    def _random_encoder(self) -> ResNetEncoder:
        """tools/eval_unsup_seg.py's random-init row: ``torch.manual_seed(seed)`` then a fresh ResNet (the
        training's global RNG state is left as it was)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return ResNetEncoder(self.depth)

    def run(
        self, encoder: ResNetEncoder, k: int, should_stop: Callable[[], bool]
    ) -> tuple[dict[str, float | int], np.ndarray | None] | None:
        """Evaluate ``encoder`` (eval mode for the duration). Returns (the record's eval/* values, the
        picture on rank 0), or None when a preemption signal cut it short (nothing to log)."""
        tic = time.perf_counter()
        was_training = encoder.training
        sync_buffers(encoder, self.info)
        encoder.eval()
        try:
            scored = self._score(encoder, should_stop)
            if scored is None:
                return None
            res, skipped = scored
            record: dict[str, float | int] = {
                "eval/unsup_miou": res.rule.miou,
                "eval/unsup_fg_iou": res.rule.fg_iou,
                "eval/unsup_oracle_miou": res.oracle.miou,
                "eval/unsup_oracle_fg_iou": res.oracle.fg_iou,
                "eval/images": len(res.rule.fg),
            }
            if skipped:
                record["eval/skipped_images"] = skipped
            if self.data.knn_train is not None:
                record["eval/knn_top1"], knn_skipped = self._knn(encoder)
                if knn_skipped:
                    record["eval/knn_skipped_images"] = knn_skipped
            if not self.baselines_done:
                device = next(encoder.parameters()).device
                for name, net in (("random", self._random_encoder().to(device).eval()), ("colour", None)):
                    scored = self._score(net, should_stop)
                    if scored is None:
                        return None
                    base, _ = scored
                    record[f"eval/{name}_unsup_miou"] = base.rule.miou
                    record[f"eval/{name}_unsup_fg_iou"] = base.rule.fg_iou
                    record[f"eval/{name}_unsup_oracle_miou"] = base.oracle.miou
                    record[f"eval/{name}_unsup_oracle_fg_iou"] = base.oracle.fg_iou
            picture = self.picture(encoder, k) if self.info.is_main and self.e.pictures else None
        finally:
            encoder.train(was_training)
        if any(key.startswith("eval/random_") for key in record):
            self.baselines_done = True
        record["eval/seconds"] = round(time.perf_counter() - tic, 3)
        return record, picture

    @torch.no_grad()
    def picture(self, encoder: ResNetEncoder, k: int) -> np.ndarray | None:
        """image | superpixels | ground truth | fg rule | regions at the curriculum's current K, for the
        first ``eval.pictures`` images of this rank's share."""
        shown = [i for i in self.share[: self.e.pictures] if self._sample(i) is not None]
        if not shown:
            return None
        samples = [self._sample(i) for i in shown]
        x = torch.stack([s[0] for s in samples])
        sp = np.stack([s[1] for s in samples])
        gt = np.stack([s[2] for s in samples]).astype(np.int64)
        rule = np.stack([choose_foreground(segment(encoder, s[0], s[1])) for s in samples]).astype(np.int64)
        device = next(encoder.parameters()).device
        regions = refined_label_maps(encoder, x.to(device), torch.from_numpy(sp).to(device), (k,), KMEANS_ITERS)
        rgb = np.stack([self.cache[i][0] for i in shown])  # type: ignore[index]
        return region_grid(rgb, sp, [("ground truth", gt), ("fg rule (K=2)", rule), *regions])
