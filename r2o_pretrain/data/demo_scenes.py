"""Bundled demo data: deterministic scenes built only from images that ship with scikit-image.

Each scene is a textured background with 1-4 objects of four classes (shape + texture), with exact
instance masks (the visible part of every object). ``write_demo_dataset`` writes every export the
project uses; ``python tools/make_demo_data.py OUT_DIR`` is its command line.

    OUT_DIR/images/*.jpg              train scenes (pretraining, COCO train)
    OUT_DIR/images_val/*.jpg          val scenes (COCO val)
    OUT_DIR/instances_{train,val}.json  COCO instances, exact masks as uncompressed RLE
    OUT_DIR/voc/JPEGImages, SegmentationClass (palette PNG, 255 borders), ImageSets/Segmentation/{train,val}.txt
    OUT_DIR/fg_masks/images, fg_masks/masks   single-object scenes + binary masks (unsupervised eval)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata
from skimage.draw import ellipse, polygon
from skimage.segmentation import find_boundaries
from skimage.transform import resize

CLASSES = ("disc", "box", "star", "triangle")
_TEXTURES = {"disc": "coffee", "box": "astronaut", "star": "chelsea", "triangle": "rocket"}
_BACKGROUNDS = ("grass", "gravel", "brick", "moon", "hubble_deep_field")
VERSION = 1


@dataclass
class Instance:
    category: int  # 1-based class id
    mask: np.ndarray  # bool[H,W], visible part


@dataclass
class Scene:
    image: np.ndarray  # uint8[H,W,3]
    instances: list[Instance]


def _rgb(name: str) -> np.ndarray:
    img = getattr(skdata, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return img[..., :3].astype(np.uint8)


class SceneGenerator:
    """``scene(rng, n_objects)`` draws one scene; all randomness comes from the numpy Generator."""

    def __init__(self, size: int = 192) -> None:
        self.size = size
        self.textures = {c: _rgb(t) for c, t in _TEXTURES.items()}
        self.backgrounds = [_rgb(b) for b in _BACKGROUNDS]

    def _patch(self, source: np.ndarray, rng: np.random.Generator, tint: bool) -> np.ndarray:
        h, w = source.shape[:2]
        side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = resize(
            source[y : y + side, x : x + side], (self.size, self.size), preserve_range=True, anti_aliasing=True
        )
        if tint:
            crop = crop * rng.uniform(0.6, 1.2, size=3)
        return np.clip(crop, 0, 255).astype(np.uint8)

    def _shape(self, cls: str, rng: np.random.Generator) -> np.ndarray:
        s = self.size
        r = rng.uniform(0.12, 0.24) * s
        cy, cx = rng.uniform(r, s - r, size=2)
        angle = rng.uniform(0, 2 * math.pi)
        mask = np.zeros((s, s), dtype=bool)
        if cls == "disc":
            rr, cc = ellipse(cy, cx, r, r * rng.uniform(0.7, 1.0), shape=(s, s), rotation=angle)
        else:
            if cls == "box":
                radii, n = [r] * 4, 4
            elif cls == "triangle":
                radii, n = [r * 1.1] * 3, 3
            else:  # star
                radii, n = [r if i % 2 == 0 else r * 0.45 for i in range(10)], 10
            t = angle + np.arange(n) * 2 * math.pi / n
            rr, cc = polygon(cy + np.array(radii) * np.sin(t), cx + np.array(radii) * np.cos(t), shape=(s, s))
        mask[rr, cc] = True
        return mask

    def scene(self, rng: np.random.Generator, n_objects: int, min_visible: int = 80) -> Scene:
        image = self._patch(self.backgrounds[int(rng.integers(len(self.backgrounds)))], rng, tint=True)
        painted: list[tuple[int, np.ndarray]] = []
        for _ in range(n_objects):
            cls_id = int(rng.integers(len(CLASSES)))
            mask = self._shape(CLASSES[cls_id], rng)
            texture = self._patch(self.textures[CLASSES[cls_id]], rng, tint=False)
            image[mask] = texture[mask]
            painted.append((cls_id + 1, mask))
        instances = []
        covered = np.zeros((self.size, self.size), dtype=bool)
        for category, mask in reversed(painted):  # later objects occlude earlier ones
            visible = mask & ~covered
            covered |= mask
            if visible.sum() >= min_visible:
                instances.append(Instance(category, visible))
        return Scene(image, instances[::-1])


def rle_encode(mask: np.ndarray) -> dict:
    """bool[H,W] → COCO uncompressed RLE (column-major runs, starting with a run of zeros)."""
    flat = np.asfortranarray(mask).reshape(-1, order="F").astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def _bbox(mask: np.ndarray) -> list[float]:
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


def _coco(scenes: list[Scene], names: list[str]) -> dict:
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
                    "segmentation": rle_encode(ins.mask),
                    "area": float(ins.mask.sum()),
                    "bbox": _bbox(ins.mask),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_demo_dataset(
    out_dir: str | Path, n_train: int = 240, n_val: int = 60, n_fg: int = 60, size: int = 192, seed: int = 0
) -> Path:
    """Write every demo export under ``out_dir`` (deterministic for given arguments); returns out_dir."""
    out = Path(out_dir)
    gen = SceneGenerator(size)
    rng = np.random.default_rng(seed)
    splits = {
        "train": [gen.scene(rng, int(rng.integers(2, 5))) for _ in range(n_train)],
        "val": [gen.scene(rng, int(rng.integers(2, 5))) for _ in range(n_val)],
    }
    fg = [gen.scene(rng, 1, min_visible=1) for _ in range(n_fg)]
    voc = out / "voc"
    for d in (
        "images",
        "images_val",
        "voc/JPEGImages",
        "voc/SegmentationClass",
        "voc/ImageSets/Segmentation",
        "fg_masks/images",
        "fg_masks/masks",
    ):
        (out / d).mkdir(parents=True, exist_ok=True)
    pal = voc_palette()
    for split, scenes in splits.items():
        folder = "images" if split == "train" else "images_val"
        names = [f"{split}_{i:04d}.jpg" for i in range(len(scenes))]
        for scene, name in zip(scenes, names):
            Image.fromarray(scene.image).save(out / folder / name, quality=92)
            Image.fromarray(scene.image).save(voc / "JPEGImages" / name, quality=92)
            seg = Image.fromarray(class_map(scene), mode="P")
            seg.putpalette(pal)
            seg.save(voc / "SegmentationClass" / name.replace(".jpg", ".png"))
        (out / f"instances_{split}.json").write_text(json.dumps(_coco(scenes, names)))
        (voc / "ImageSets/Segmentation" / f"{split}.txt").write_text("".join(n[:-4] + "\n" for n in names))
    for i, scene in enumerate(fg):
        Image.fromarray(scene.image).save(out / "fg_masks/images" / f"fg_{i:04d}.jpg", quality=92)
        mask = scene.instances[0].mask if scene.instances else np.zeros(scene.image.shape[:2], bool)
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / "fg_masks/masks" / f"fg_{i:04d}.png")
    meta = {
        "version": VERSION,
        "n_train": n_train,
        "n_val": n_val,
        "n_fg": n_fg,
        "size": size,
        "seed": seed,
        "classes": list(CLASSES),
    }
    (out / "demo.json").write_text(json.dumps(meta, indent=1))
    return out


def demo_dataset_ready(out_dir: str | Path) -> bool:
    """True when ``out_dir`` holds a complete demo dataset of the current version."""
    meta = Path(out_dir) / "demo.json"
    try:
        return json.loads(meta.read_text()).get("version") == VERSION
    except (OSError, ValueError):
        return False
