"""Writers shared by the generated scene datasets (demo shapes, real-photo objects).

A ``Scene`` is an RGB image with the visible mask of every object instance; these helpers turn scenes
into the formats the project's readers use: COCO instances (detectron2 ``--coco-dataset``, pycocotools),
VOC-style palette PNGs with 255 on object borders (mmsegmentation), and binary foreground masks
(``tools/eval_unsup_seg.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.segmentation import find_boundaries


@dataclass
class Instance:
    category: int  # 1-based class id
    mask: np.ndarray  # bool[H,W], visible part


@dataclass
class Scene:
    image: np.ndarray  # uint8[H,W,3]
    instances: list[Instance]


def rle_encode(mask: np.ndarray) -> dict:
    """bool[H,W] → COCO uncompressed RLE (column-major runs, starting with a run of zeros)."""
    flat = np.asfortranarray(mask).reshape(-1, order="F").astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def bbox(mask: np.ndarray) -> list[float]:
    """bool[H,W] (not empty) → COCO box [x, y, w, h] covering every True pixel."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def class_map(scene: Scene, border: int = 1) -> np.ndarray:
    """uint8[H,W]: 0 background, class ids on objects, 255 on a band around object borders (VOC style)."""
    out = np.zeros(scene.image.shape[:2], dtype=np.uint8)
    inst = np.zeros(scene.image.shape[:2], dtype=np.int32)
    for i, ins in enumerate(scene.instances, 1):
        out[ins.mask] = ins.category
        inst[ins.mask] = i
    band = find_boundaries(inst, mode="thick")
    for _ in range(border - 1):
        band = find_boundaries(band.astype(np.int32), mode="thick") | band
    out[band] = 255
    return out


def voc_palette() -> list[int]:
    """PASCAL VOC's colour map (256 entries, flattened RGB)."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def coco_instances(
    scenes: Sequence[Scene],
    names: Sequence[str],
    classes: Sequence[str],
    supercategory: str,
    segmentation: Callable[[np.ndarray], list | dict] = rle_encode,
) -> dict:
    """COCO instances dict (``iscrowd`` 0); ``segmentation(mask)`` gives each annotation's polygons or RLE."""
    images, annotations = [], []
    for img_id, (scene, name) in enumerate(zip(scenes, names), 1):
        h, w = scene.image.shape[:2]
        images.append({"id": img_id, "file_name": name, "height": h, "width": w})
        for ins in scene.instances:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": img_id,
                    "category_id": ins.category,
                    "segmentation": segmentation(ins.mask),
                    "area": float(ins.mask.sum()),
                    "bbox": bbox(ins.mask),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": n, "supercategory": supercategory} for i, n in enumerate(classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


def save_class_png(scene: Scene, path: Path, palette: list[int] | None = None) -> None:
    """The scene's VOC class map as a palette PNG (class ids as indices, 255 on borders)."""
    seg = Image.fromarray(class_map(scene), mode="P")
    seg.putpalette(palette or voc_palette())
    seg.save(path)


def save_fg_mask(mask: np.ndarray, path: Path) -> None:
    """bool[H,W] → binary PNG (0 / 255), the layout ``tools/eval_unsup_seg.py`` reads."""
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
