"""Unsupervised object segmentation (the CUB protocol): fg/bg masks from a pretrained encoder alone.

For each image: resize to S×S, SLIC superpixels, the encoder's layer3 (c4) map pooled per superpixel,
k-means with K=2 over that image's superpixels: ``model/refiner.py``'s ``RegionRefiner`` with K=2, called
per image, no training. The
foreground is the cluster that touches the image border least (the fraction of border pixels it
covers; ties go to the smaller cluster). The oracle instead picks whichever assignment matches the
ground truth better, an upper bound for the fg rule. The colour-only baseline (``encoder=None``) runs the
same k-means (K=2) on each superpixel's mean CIE Lab colour (Euclidean) instead of encoder features.

Scores: per image, IoU of the foreground and IoU of the background; a dataset's fg IoU is the mean over
images, and its mIoU the mean of fg and bg IoU (as in the literature).

``evaluate`` is what tools/eval_unsup_seg.py runs; the online evaluation during pretraining
(``r2o_pretrain/eval/online.py``) runs the same per-image functions (``prepare``, ``segment``,
``image_scores``) on its share of the images and aggregates with the same ``Scores``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.color import rgb2lab

from ..data.device_augment import to_input_tensor, unnormalize
from ..data.folder import DECODE_ERRORS, HIGH_BIT_MODES, IMAGE_EXTENSIONS, BadImageError, open_rgb
from ..data.superpixels import slic_labels
from ..model.encoder import ResNetEncoder
from ..model.refiner import RegionRefiner

KMEANS_ITERS = 20


class EvalDataError(RuntimeError):
    """The evaluation data cannot be used; the message names the files."""


# ----------------------------------------------------------------------------- metric (pure numpy)
def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two boolean masks; 1.0 when both are empty."""
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def fg_bg_iou(pred_fg: np.ndarray, gt_fg: np.ndarray) -> tuple[float, float]:
    return iou(pred_fg, gt_fg), iou(~pred_fg, ~gt_fg)


def border_fraction(mask: np.ndarray) -> float:
    """Fraction of the image's border pixels that ``mask`` covers."""
    border = np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])
    return float(border.mean())


def choose_foreground(labels: np.ndarray) -> np.ndarray:
    """labels int[H,W] in {0,1} → bool[H,W]: the cluster touching the border least (ties: the smaller)."""
    candidates = [labels == c for c in (0, 1)]
    return min(candidates, key=lambda m: (border_fraction(m), m.sum()))


def oracle_foreground(labels: np.ndarray, gt_fg: np.ndarray) -> np.ndarray:
    """The assignment of the two clusters to fg/bg that scores the better mIoU against the truth."""
    candidates = [labels == c for c in (0, 1)]
    return max(candidates, key=lambda m: sum(fg_bg_iou(m, gt_fg)))


@dataclass
class Scores:
    fg: list[float] = field(default_factory=list)
    bg: list[float] = field(default_factory=list)

    def add(self, pred_fg: np.ndarray, gt_fg: np.ndarray) -> None:
        self.add_values(*fg_bg_iou(pred_fg, gt_fg))

    def add_values(self, fg: float, bg: float) -> None:
        self.fg.append(fg)
        self.bg.append(bg)

    @property
    def fg_iou(self) -> float:
        return float(np.mean(self.fg)) if self.fg else float("nan")

    @property
    def miou(self) -> float:
        return float((np.mean(self.fg) + np.mean(self.bg)) / 2) if self.fg else float("nan")


# ----------------------------------------------------------------------------- data
@dataclass
class Pair:
    image: Path
    mask: Path


@dataclass
class PairListing:
    pairs: list[Pair]
    problems: list[str]  # human-readable, one per file


def _is_cub(images: Path) -> bool:
    return (images.parent / "images.txt").is_file() and (images.parent / "train_test_split.txt").is_file()


def list_pairs(images: str | os.PathLike, masks: str | os.PathLike, split: str = "test") -> PairListing:
    """Image/mask pairs from the CUB-200-2011 layout or a plain images/ + masks/ folder pair."""
    images, masks = Path(images), Path(masks)
    for d in (images, masks):
        if not d.is_dir():
            raise EvalDataError(f"{d} is not a folder")
    problems: list[str] = []
    pairs: list[Pair] = []
    if _is_cub(images):
        root = images.parent
        names = dict(line.split() for line in (root / "images.txt").read_text().splitlines() if line.strip())
        is_train = dict(
            line.split() for line in (root / "train_test_split.txt").read_text().splitlines() if line.strip()
        )
        for image_id, rel in sorted(names.items(), key=lambda kv: int(kv[0])):
            if split != "all" and (is_train.get(image_id) == "1") != (split == "train"):
                continue
            img, mask = images / rel, masks / Path(rel).with_suffix(".png")
            if not img.is_file():
                problems.append(f"missing image {img} (listed in images.txt)")
            elif not mask.is_file():
                problems.append(f"missing mask {mask} for {img}")
            else:
                pairs.append(Pair(img, mask))
    else:
        imgs = {p.stem: p for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}
        msks = {p.stem: p for p in sorted(masks.iterdir()) if p.suffix.lower() == ".png"}
        for stem, img in imgs.items():
            if stem in msks:
                pairs.append(Pair(img, msks[stem]))
            else:
                problems.append(f"missing mask {masks / (stem + '.png')} for {img}")
        problems += [f"mask {m} has no image {images / m.stem}.*" for s, m in msks.items() if s not in imgs]
    return PairListing(pairs, problems)


def gt_foreground(mask: Image.Image) -> np.ndarray:
    """A decoded mask → bool[H,W] foreground, for the formats masks come in:

    - palette (``P``: VOC ``SegmentationClass``/``SegmentationObject`` PNGs, labelling-tool exports): the
      palette *indices*, not their colours' brightness; 0 is background, and 255 (VOC's void border) counts as
      foreground only when no other index is used (a 0/255 binary mask saved with a palette);
    - colour (RGB with different channels, a colour-coded export): every non-black pixel is foreground;
    - greyscale (``L``, ``1``, 16-bit, RGB with equal channels, a palette mapping each index used to its own
      grey, or the alpha channel of an ``LA``/``RGBA`` mask whose colour is the same everywhere): see
      ``grey_foreground`` (soft and binary masks thresholded, label maps by value).
    """
    if mask.mode == "P" and not _grey_identity_palette(mask):
        idx = np.asarray(mask)
        objects = (idx != 0) & (idx != 255)
        return objects if objects.any() else idx != 0
    if mask.mode in ("LA", "RGBA", "PA"):
        colour, alpha = np.asarray(mask.convert("RGB")), np.asarray(mask.getchannel("A"))
        if (colour == colour[0, 0]).all() and alpha.min() != alpha.max():  # the mask is in the alpha channel
            return grey_foreground(alpha, 255)
    if mask.mode in ("RGB", "RGBA"):
        rgb = np.asarray(mask.convert("RGB"))
        if not ((rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])).all():
            return rgb.max(axis=2) > 0
        return grey_foreground(rgb[..., 0], 255)
    if mask.mode in HIGH_BIT_MODES:
        return grey_foreground(np.asarray(mask), 65535)
    if mask.mode == "P":  # a greyscale image stored with the palette i -> (i, i, i): its values are its indices
        return grey_foreground(np.asarray(mask), 255)
    return grey_foreground(np.asarray(mask.convert("L")), 255)


def grey_foreground(values: np.ndarray, full: int) -> np.ndarray:
    """A greyscale mask, values in [0, full] → bool foreground.

    A **label map** (every non-zero value other than ``full`` below full/2, and the commonest non-zero value
    not ``full``: VOC ``SegmentationClassAug`` class ids with 255 void borders, a binary 0/1 mask) has every
    value but 0 and ``full`` as foreground. Any other mask (CUB's soft 0–255 masks, whose objects are mostly
    255; binary 0/255) is thresholded at half scale."""
    nonzero = values[values != 0]
    if nonzero.size == 0:
        return np.zeros(values.shape, bool)
    found, counts = np.unique(nonzero, return_counts=True)
    ids = found[found != full]
    if found[counts.argmax()] != full and (ids < full / 2).all():
        return (values != 0) & (values != full)
    return values >= full / 2


def _grey_identity_palette(mask: Image.Image) -> bool:
    """Whether every index ``mask`` uses has the palette colour (i, i, i): a greyscale mask saved as "P"."""
    palette = mask.getpalette() or []
    return all(palette[3 * i : 3 * i + 3] == [i, i, i] for i in np.unique(np.asarray(mask)).tolist())


def read_gt_mask(path: Path) -> np.ndarray:
    """bool[H,W] foreground of the mask file ``path`` (``gt_foreground``), or EvalDataError naming it."""
    try:
        with Image.open(path) as mask:
            mask.load()
            return gt_foreground(mask)
    except DECODE_ERRORS as exc:
        raise EvalDataError(f"mask {path}: cannot decode image ({type(exc).__name__}: {exc})") from exc


def read_pair(pair: Pair) -> tuple[Image.Image, np.ndarray]:
    """(RGB image, bool[H,W] foreground), both decoded in full, or EvalDataError naming the file that cannot be
    read or the pair whose sizes differ."""
    try:
        img = open_rgb(str(pair.image))
    except BadImageError as exc:
        raise EvalDataError(f"image {exc}") from exc  # "image <path>: cannot decode image (<why>)"
    gt = read_gt_mask(pair.mask)
    if img.size != (gt.shape[1], gt.shape[0]):
        raise EvalDataError(
            f"mask {pair.mask} is {gt.shape[1]}x{gt.shape[0]} but image {pair.image} is {img.size[0]}x{img.size[1]}"
        )
    return img, gt


def check_pair(pair: Pair) -> np.ndarray:
    """The pair's foreground, bool[H,W], after every check: EvalDataError (naming the file) when the image
    or mask cannot be decoded or their sizes differ."""
    return read_pair(pair)[1]


def prepare_arrays(pair: Pair, size: int, n_segments: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb uint8[S,S,3], superpixels int64[S,S], gt bool[S,S]) or EvalDataError on a mismatch."""
    img, gt = read_pair(pair)
    rgb = np.array(img.resize((size, size), Image.BICUBIC), dtype=np.uint8)
    gt = np.asarray(Image.fromarray(gt.astype(np.uint8)).resize((size, size), Image.NEAREST)).astype(bool)
    return rgb, slic_labels(rgb, n_segments), gt


def prepare(pair: Pair, size: int, n_segments: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(normalised float[3,S,S], superpixels int64[S,S], gt bool[S,S]) or EvalDataError on a mismatch."""
    rgb, superpixels, gt = prepare_arrays(pair, size, n_segments)
    return to_input_tensor(rgb), superpixels, gt


# ----------------------------------------------------------------------------- segmentation
@torch.no_grad()
def two_way_labels(encoder: ResNetEncoder, x: torch.Tensor, superpixels: np.ndarray, seed: int = 0) -> np.ndarray:
    """float[3,S,S] + int[S,S] superpixels → int[S,S] in {0,1}: k-means (K=2) over superpixel features.

    The encoder runs on its own device (its parameters'); the pooling and k-means run on the CPU with a
    CPU generator, so a GPU encoder clusters exactly as the CPU tool does (up to the convolutions)."""
    sp = torch.from_numpy(superpixels)[None]
    device = next(encoder.parameters()).device
    c4 = encoder.forward_c4(x[None].to(device)).float().cpu()
    refiner = RegionRefiner(KMEANS_ITERS)
    labels, _ = refiner(c4, sp, 2, sp.shape[-1], torch.Generator().manual_seed(seed))
    return labels[0].numpy()


@torch.no_grad()
def colour_two_way_labels(x: torch.Tensor, superpixels: np.ndarray, seed: int = 0) -> np.ndarray:
    """float[3,S,S] (normalised) + int[S,S] superpixels → int[S,S] in {0,1}: k-means (K=2) over the
    superpixels' mean CIE Lab colours, the colour-only baseline."""
    rgb = unnormalize(x).permute(1, 2, 0).numpy()
    lab = torch.from_numpy(rgb2lab(rgb)).float().reshape(-1, 3)
    sp = torch.from_numpy(superpixels).reshape(-1)
    n = int(sp.max()) + 1
    counts = torch.bincount(sp, minlength=n)
    valid = counts > 0
    feats = torch.zeros(n, 3).index_add_(0, sp, lab) / counts.clamp_min(1)[:, None]
    refiner = RegionRefiner(KMEANS_ITERS)
    sp_map = torch.from_numpy(superpixels)[None]
    labels, _ = refiner.cluster(
        feats[None], valid[None], sp_map, 2, sp_map.shape[-1], torch.Generator().manual_seed(seed)
    )
    return labels[0].numpy()


def segment(encoder: ResNetEncoder | None, x: torch.Tensor, superpixels: np.ndarray) -> np.ndarray:
    """int[S,S] in {0,1}: ``encoder``'s two-way clustering, or the colour-only baseline when it is None."""
    return two_way_labels(encoder, x, superpixels) if encoder is not None else colour_two_way_labels(x, superpixels)


def image_scores(labels: np.ndarray, gt: np.ndarray) -> tuple[float, float, float, float]:
    """labels int[S,S] in {0,1}, gt bool[S,S] → (fg IoU, bg IoU) of the fg rule, then of the oracle."""
    return (*fg_bg_iou(choose_foreground(labels), gt), *fg_bg_iou(oracle_foreground(labels, gt), gt))


@dataclass
class EvalResult:
    rule: Scores
    oracle: Scores
    skipped: list[str]
    empty_masks: int = 0  # scored images whose mask has no foreground as read (a misread format shows here)

    @classmethod
    def from_image_scores(cls, rows: Iterable[tuple[float, float, float, float]], skipped: list[str]) -> EvalResult:
        """Aggregate ``image_scores`` rows (in the listing's order) as ``evaluate`` does."""
        rule, oracle = Scores(), Scores()
        for rule_fg, rule_bg, oracle_fg, oracle_bg in rows:
            rule.add_values(rule_fg, rule_bg)
            oracle.add_values(oracle_fg, oracle_bg)
        return cls(rule, oracle, skipped)


def evaluate(
    encoder: ResNetEncoder | None, pairs: Iterable[Pair], size: int = 224, n_segments: int = 100, progress=None
) -> EvalResult:
    """Scores of ``encoder``'s features, or of the colour-only baseline when ``encoder`` is None."""
    if encoder is not None:
        encoder.eval()
    rows, skipped, empty = [], [], 0
    for pair in progress(list(pairs)) if progress else pairs:
        try:
            x, sp, gt = prepare(pair, size, n_segments)
        except EvalDataError as exc:
            skipped.append(str(exc))
            continue
        empty += not gt.any()
        rows.append(image_scores(segment(encoder, x, sp), gt))
    result = EvalResult.from_image_scores(rows, skipped)
    result.empty_masks = empty
    return result
