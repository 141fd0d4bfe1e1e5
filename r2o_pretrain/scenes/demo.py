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
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata
from skimage.draw import ellipse, polygon
from skimage.transform import resize

from .export import (  # noqa: F401  (Instance, class_map, rle_encode: re-exported for old imports)
    Instance,
    Scene,
    class_map,
    coco_instances,
    rle_encode,
    save_class_png,
    save_fg_mask,
    voc_palette,
)

CLASSES = ("disc", "box", "star", "triangle")
_TEXTURES = {"disc": "coffee", "box": "astronaut", "star": "chelsea", "triangle": "rocket"}
_BACKGROUNDS = ("grass", "gravel", "brick", "moon", "hubble_deep_field")
VERSION = 1


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


def _coco(scenes: list[Scene], names: list[str]) -> dict:
    return coco_instances(scenes, names, CLASSES, "shape")


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
            save_class_png(scene, voc / "SegmentationClass" / name.replace(".jpg", ".png"), pal)
        (out / f"instances_{split}.json").write_text(json.dumps(_coco(scenes, names)))
        (voc / "ImageSets/Segmentation" / f"{split}.txt").write_text("".join(n[:-4] + "\n" for n in names))
    for i, scene in enumerate(fg):
        Image.fromarray(scene.image).save(out / "fg_masks/images" / f"fg_{i:04d}.jpg", quality=92)
        mask = scene.instances[0].mask if scene.instances else np.zeros(scene.image.shape[:2], bool)
        save_fg_mask(mask, out / "fg_masks/masks" / f"fg_{i:04d}.png")
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
