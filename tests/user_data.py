"""Small datasets in the formats users bring, unlike the demo scenes: a COCO json with polygon
segmentations (traced from masks with OpenCV, as labelling tools export them) and a VOC tree with palette
PNGs whose objects have 255 borders. Mixed image sizes, grayscale JPEGs, an image without annotations, a
category without instances, non-contiguous category ids and images in subfolders."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# (id, name): ids as a labelling tool writes them (not 1..N); "kite" never occurs
CATEGORIES = [(3, "disc"), (7, "box"), (9, "bar"), (12, "kite")]
SIZES = [(80, 120), (112, 64), (96, 96), (72, 100)]  # (height, width)


def _shapes(rng: np.random.Generator, h: int, w: int) -> list[tuple[int, np.ndarray]]:
    """(category index, HxW bool mask) for one to three objects of the first three categories."""
    out = []
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(0, 3))
        mask = np.zeros((h, w), np.uint8)
        cx, cy = int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4))
        r = int(rng.integers(8, max(9, min(h, w) // 4)))
        if kind == 0:
            cv2.circle(mask, (cx, cy), r, 1, -1)
        elif kind == 1:
            cv2.rectangle(mask, (cx - r, cy - r), (cx + r, cy + r // 2), 1, -1)
        else:
            cv2.fillConvexPoly(mask, np.array([[cx - r, cy + r], [cx, cy - r], [cx + r, cy + r]], np.int32), 1)
        out.append((kind, mask.astype(bool)))
    return out


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons [[x0, y0, x1, y1, ...], ...] of a bool mask's outer contours (at least 3 points each)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def _picture(rng: np.random.Generator, shapes, h: int, w: int, grayscale: bool) -> Image.Image:
    img = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    for kind, mask in shapes:
        img[mask] = np.array([(220, 60, 60), (60, 200, 60), (60, 60, 230)][kind], np.uint8)
    pil = Image.fromarray(img)
    return pil.convert("L") if grayscale else pil


def write_coco_polygons(root: Path, split: str, n_images: int, seed: int, minimal: bool = False) -> tuple[Path, Path]:
    """``root/{split}.json`` and ``root/images/``; images of this split live in ``images/{split}/part_k/``.

    Returns (json path, image root). Image 1 has no annotations; every third image is a grayscale JPEG.
    ``minimal``: annotations without 'area' and 'iscrowd' (optional for training, as some exporters write).
    """
    rng = np.random.default_rng(seed)
    image_root = root / "images"
    images, annotations = [], []
    for i in range(n_images):
        h, w = SIZES[i % len(SIZES)]
        shapes = [] if i == 1 else _shapes(rng, h, w)
        rel = f"{split}/part_{i % 2}/img_{i:03d}.jpg"
        (image_root / rel).parent.mkdir(parents=True, exist_ok=True)
        _picture(rng, shapes, h, w, grayscale=i % 3 == 2).save(image_root / rel, quality=95)
        images.append({"id": 100 + i, "file_name": rel, "height": h, "width": w})
        for kind, mask in shapes:
            polygons = mask_to_polygons(mask)
            ys, xs = np.nonzero(mask)
            x0, y0 = float(xs.min()), float(ys.min())
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": 100 + i,
                    "category_id": CATEGORIES[kind][0],
                    "segmentation": polygons,
                    "area": float(mask.sum()),
                    "bbox": [x0, y0, float(xs.max()) - x0 + 1, float(ys.max()) - y0 + 1],
                    "iscrowd": 0,
                }
            )
    if minimal:
        annotations = [{k: v for k, v in a.items() if k not in ("area", "iscrowd")} for a in annotations]
    categories = [{"id": cid, "name": name, "supercategory": "thing"} for cid, name in CATEGORIES]
    path = root / f"{split}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path, image_root


VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128] + [0] * (3 * 250) + [224, 224, 192]


def write_voc_palette_tree(root: Path, n_train: int = 6, n_val: int = 3, seed: int = 0) -> Path:
    """A VOC2012-layout tree (JPEGImages, SegmentationClass[Aug] palette PNGs with 255 object borders,
    ImageSets/Segmentation/{train,val,aug}.txt); classes 1-3 of VOC's 20, other sizes, grayscale JPEGs."""
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names = {"train": [], "val": []}
    for i in range(n_train + n_val):
        split = "train" if i < n_train else "val"
        h, w = SIZES[i % len(SIZES)]
        shapes = _shapes(rng, h, w)
        label = np.zeros((h, w), np.uint8)
        for kind, mask in shapes:
            border = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~mask
            label[border] = 255
            label[mask] = kind + 1
        stem = f"2026_{i:06d}"
        _picture(rng, shapes, h, w, grayscale=i % 3 == 2).save(root / "JPEGImages" / f"{stem}.jpg", quality=95)
        png = Image.frombytes("P", (w, h), label.tobytes())
        png.putpalette(VOC_PALETTE)
        for sub in ("SegmentationClass", "SegmentationClassAug"):
            png.save(root / sub / f"{stem}.png")
        names[split].append(stem)
    sets = root / "ImageSets/Segmentation"
    (sets / "train.txt").write_text("\n".join(names["train"]) + "\n")
    (sets / "aug.txt").write_text("\n".join(names["train"]) + "\n")
    (sets / "val.txt").write_text("\n".join(names["val"]) + "\n")
    return root


# Cityscapes label names (cityscapesscripts' labels.py) → trainId; "ego vehicle" and the unlabelled
# background become 255 (ignored)
CITYSCAPES_TRAIN_IDS = {
    "road": 0,
    "sidewalk": 1,
    "building": 2,
    "vegetation": 8,
    "sky": 10,
    "person": 11,
    "car": 13,
    "ego vehicle": 255,
}


def _photos() -> list[np.ndarray]:
    """scikit-image's bundled colour photographs (no download), RGB uint8."""
    from skimage import data

    return [
        data.astronaut(),
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.stereo_motorcycle()[0],
        data.hubble_deep_field(),
    ]


def write_cityscapes_polygon_tree(
    root: Path, n_train: int = 4, n_val: int = 2, size: tuple[int, int] = (64, 128), seed: int = 0
) -> Path:
    """A Cityscapes-layout tree as downloaded, before preparation: real photographs resized to ``size`` (h, w) as
    ``leftImg8bit/{train,val}/CITY/CITY_SSSSSS_FFFFFF_leftImg8bit.png`` and polygon annotations with Cityscapes
    label names as ``gtFine/.../*_gtFine_polygons.json``; no label PNGs (cityscapesscripts'
    ``createTrainIdLabelImgs`` makes them). Sky, building, vegetation, sidewalk, road, a car and a person per
    image; an unlabelled band (→ 255) and an "ego vehicle" strip (→ 255) are ignored pixels."""
    h, w = size
    rng = np.random.default_rng(seed)
    photos = _photos()
    for i in range(n_train + n_val):
        split, city = ("train", "aachen") if i < n_train else ("val", "frankfurt")
        stem = f"{city}_{i:06d}_000019"
        img_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        photo = cv2.resize(photos[i % len(photos)], (w, h), interpolation=cv2.INTER_AREA)
        Image.fromarray(photo).save(img_dir / f"{stem}_leftImg8bit.png")
        split_x = int(rng.integers(w // 4, 3 * w // 4))
        car_x, person_x = int(rng.integers(0, w - 40)), int(rng.integers(10, w - 10))
        objects = [  # drawn in this order, later ones on top (as cityscapesscripts does)
            ("sky", [[0, 0], [w, 0], [w, h // 4], [0, h // 4]]),
            ("building", [[0, h // 8], [split_x, h // 8], [split_x, h // 2], [0, h // 2]]),
            ("vegetation", [[split_x + 8, h // 5], [w, h // 5], [w, h // 2], [split_x + 8, h // 2]]),
            ("sidewalk", [[0, h // 2], [w, h // 2], [w, 5 * h // 8], [0, 5 * h // 8]]),
            ("road", [[0, 5 * h // 8], [w, 5 * h // 8], [w, h], [0, h]]),
            ("car", [[car_x, h // 2], [car_x + 36, h // 2], [car_x + 36, 3 * h // 4], [car_x, 3 * h // 4]]),
            ("person", [[person_x - 4, 3 * h // 8], [person_x + 4, 3 * h // 8], [person_x, 5 * h // 8]]),
            ("ego vehicle", [[0, h - 6], [w, h - 6], [w, h], [0, h]]),
        ]
        (gt_dir / f"{stem}_gtFine_polygons.json").write_text(
            json.dumps(
                {
                    "imgHeight": h,
                    "imgWidth": w,
                    "objects": [{"label": name, "polygon": poly} for name, poly in objects],
                }
            )
        )
    return root


ADE_NUM_CLASSES = 150


def write_ade20k_tree(
    root: Path, n_train: int = 4, n_val: int = 2, sizes: tuple[tuple[int, int], ...] = ((96, 128), (128, 96), (80, 112))
) -> Path:
    """An ``ADEChallengeData2016`` tree as the MIT Scene Parsing zip unpacks: real photographs as
    ``images/{training,validation}/ADE_{train,val}_%08d.jpg`` and single-channel label PNGs as
    ``annotations/{training,validation}/ADE_{train,val}_%08d.png`` with 0 = "other" (ignored through
    ``reduce_zero_label``) and 1..150 the classes. Each label map has a band of 0, the class ids 1 and 150
    (the ends of the range) and a few others; sizes (h, w) vary. Returns ``root``."""
    rng = np.random.default_rng(0)
    photos = _photos()
    for i in range(n_train + n_val):
        split, prefix, k = ("training", "train", i + 1) if i < n_train else ("validation", "val", i - n_train + 1)
        h, w = sizes[i % len(sizes)]
        img_dir, ann_dir = root / "images" / split, root / "annotations" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        photo = cv2.resize(photos[i % len(photos)], (w, h), interpolation=cv2.INTER_AREA)
        Image.fromarray(photo).save(img_dir / f"ADE_{prefix}_{k:08d}.jpg", quality=95)
        label = np.full((h, w), 1, np.uint8)  # class 1 ("wall") everywhere first
        label[h // 2 :] = 150  # the last class
        middle = [int(c) for c in rng.choice(np.arange(2, 150), size=2, replace=False)]
        label[h // 4 : h // 2, : w // 2] = middle[0]
        label[h // 2 : 3 * h // 4, w // 2 :] = middle[1]
        label[:, :4] = 0  # "other": ignored
        Image.fromarray(label).save(ann_dir / f"ADE_{prefix}_{k:08d}.png")
    return root
