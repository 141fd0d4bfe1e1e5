"""Region pictures: image | superpixels | refined masks, as one RGB grid (TensorBoard and regions.png)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from skimage.segmentation import find_boundaries, mark_boundaries

from .data.device_augment import unnormalize
from .model.refiner import RegionRefiner


def denormalize(raw: torch.Tensor) -> np.ndarray:
    """float[B,3,H,W] (ImageNet-normalised) → uint8[B,H,W,3]."""
    img = unnormalize(raw) * 255
    return img.round().byte().permute(0, 2, 3, 1).cpu().numpy()


def palette(n: int, seed: int = 7) -> np.ndarray:
    """n distinct-looking colours, uint8[n,3], the same for every call."""
    rng = np.random.default_rng(seed)
    return rng.integers(40, 256, size=(max(n, 1), 3), dtype=np.uint8)


def upsample_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """int[h,w] → int[size,size], nearest neighbour."""
    h, w = labels.shape
    rows = np.arange(size) * h // size
    cols = np.arange(size) * w // size
    return labels[rows[:, None], cols[None, :]]


def overlay_labels(image: np.ndarray, labels: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """uint8[H,W,3] + int[h,w] → uint8[H,W,3]: colour per region, blended, with black region borders."""
    big = upsample_labels(labels, image.shape[0])
    colours = palette(int(big.max()) + 1)[big]
    out = (image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).astype(np.uint8)
    out[find_boundaries(big, mode="inner")] = 0
    return out


def region_grid(
    images: np.ndarray,
    superpixels: np.ndarray,
    label_maps: Sequence[tuple[str, np.ndarray]],
    cell: int = 160,
) -> np.ndarray:
    """One row per image: image | superpixels | one column per (title, int[N,h,w]) label map."""
    titles = ["image", "superpixels", *[t for t, _ in label_maps]]
    n = images.shape[0]
    header = 18
    grid = Image.new("RGB", (cell * len(titles), header + cell * n), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for c, title in enumerate(titles):
        draw.text((c * cell + 4, 3), title, fill=(0, 0, 0))
    for r in range(n):
        img = images[r]
        tiles = [img, (mark_boundaries(img, superpixels[r], color=(1, 1, 0)) * 255).astype(np.uint8)]
        tiles += [overlay_labels(img, maps[r]) for _, maps in label_maps]
        for c, tile in enumerate(tiles):
            pil = Image.fromarray(tile).resize((cell, cell), Image.NEAREST)
            grid.paste(pil, (c * cell, header + r * cell))
    return np.asarray(grid)


def save_png(image: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


@torch.no_grad()
def refined_label_maps(
    encoder,
    raw: torch.Tensor,
    superpixels: torch.Tensor,
    ks: Sequence[int],
    kmeans_iters: int = 10,
    seed: int = 0,
    title: str = "",
) -> list[tuple[str, np.ndarray]]:
    """(title, int[B,R/4,R/4]) refined masks at each K from ``encoder``'s c4 of the raw views.

    raw float[B,3,R,R] (ImageNet-normalised), superpixels int64[B,R,R]. K above the number of
    superpixels in the batch is capped by k-means. Titles read ``"{title}K=k"``.
    """
    was_training = encoder.training
    encoder.eval()
    c4 = encoder.forward_c4(raw)
    encoder.train(was_training)
    refiner = RegionRefiner(kmeans_iters, kmeans_cuda_graphs="off")  # one-off pictures: a capture would not pay
    gen = torch.Generator(device=raw.device).manual_seed(seed)
    return [(f"{title}K={k}", refiner(c4, superpixels, k, raw.shape[-1] // 4, gen)[0].cpu().numpy()) for k in ks]


def regions_picture(
    encoder,
    raw: torch.Tensor,
    superpixels: torch.Tensor,
    ks: Sequence[int] = (128, 32, 8, 4),
    kmeans_iters: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """image | superpixels | refined masks at each K (``refined_label_maps``) as one RGB grid."""
    maps = refined_label_maps(encoder, raw, superpixels, ks, kmeans_iters, seed)
    return region_grid(denormalize(raw), superpixels.cpu().numpy(), maps)
