"""Small datasets in the formats users bring, unlike the demo scenes: a COCO json with polygon
segmentations (traced from masks with OpenCV, as labelling tools export them), a VOC tree with palette
PNGs whose objects have 255 borders and a VOC detection folder (XML boxes on real photos). Mixed image sizes, grayscale JPEGs, an image without annotations, a
category without instances, non-contiguous category ids and images in subfolders."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
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


# scikit-image photos with the VOC objects in them, boxes (x0, y0, x1, y1) as fractions of the photo, drawn by
# eye; (class, box, difficult, truncated). The cameraman is grayscale (saved as a one-channel JPEG).
VOC_PHOTO_OBJECTS = {
    "astronaut": [("person", (0.0, 0.02, 0.82, 1.0), 0, 1)],
    "chelsea": [("cat", (0.08, 0.0, 0.80, 1.0), 0, 1)],
    "stereo_motorcycle": [("motorbike", (0.12, 0.25, 0.92, 0.95), 0, 0), ("chair", (0.02, 0.22, 0.38, 0.62), 1, 0)],
    "camera": [("person", (0.0, 0.1, 0.60, 1.0), 0, 1)],
}


def _voc_photo(name: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    return image[0] if isinstance(image, tuple) else image


def _voc_xml(stem: str, folder: str, w: int, h: int, depth: int, objects: list) -> str:
    """A PASCAL VOC annotation as the VOC devkit writes it: 1-based inclusive pixel boxes."""
    parts = [
        f"<annotation><folder>{folder}</folder><filename>{stem}.jpg</filename>",
        "<source><database>The VOC2007 Database</database><annotation>PASCAL VOC2007</annotation></source>",
        f"<size><width>{w}</width><height>{h}</height><depth>{depth}</depth></size><segmented>0</segmented>",
    ]
    for name, (x0, y0, x1, y1), difficult, truncated in objects:
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>{truncated}</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
            f"<ymax>{y1}</ymax></bndbox></object>"
        )
    return "\n".join([*parts, "</annotation>"]) + "\n"


def write_voc_detection_tree(voc_dir: Path, splits: dict[str, int], seed: int = 0, year: int = 2007) -> dict:
    """A VOC-layout detection folder (``VOC2007/``-like): ``JPEGImages/*.jpg`` (crops of scikit-image's photos,
    some mirrored, mixed sizes, one grayscale), ``Annotations/*.xml`` (1-based boxes, ``difficult`` and
    ``truncated`` flags) and ``ImageSets/Main/{split}.txt`` for each ``{split: number of images}``.

    Returns {image id: [(class, (xmin, ymin, xmax, ymax) 1-based, difficult), ...]} as written.
    """
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc_dir / sub).mkdir(parents=True, exist_ok=True)
    names = list(VOC_PHOTO_OBJECTS)
    written: dict[str, list] = {}
    i = 0
    for split, n in splits.items():
        ids = []
        for _ in range(n):
            name = names[i % len(names)]
            photo = _voc_photo(name)
            ph, pw = photo.shape[:2]
            # a crop keeping 85-100 % of each side, resized so that the short side is 72-112 pixels
            cw, ch = int(pw * rng.uniform(0.85, 1.0)), int(ph * rng.uniform(0.85, 1.0))
            cx, cy = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
            scale = rng.uniform(72, 112) / min(cw, ch)
            w, h = round(cw * scale), round(ch * scale)
            image = cv2.resize(photo[cy : cy + ch, cx : cx + cw], (w, h), interpolation=cv2.INTER_AREA)
            flip = bool(rng.integers(0, 2))
            if flip:
                image = image[:, ::-1]
            objects = []
            for cls, (fx0, fy0, fx1, fy1), difficult, truncated in VOC_PHOTO_OBJECTS[name]:
                x0, x1 = (np.clip([fx0 * pw - cx, fx1 * pw - cx], 0, cw) * scale).tolist()
                y0, y1 = (np.clip([fy0 * ph - cy, fy1 * ph - cy], 0, ch) * scale).tolist()
                if flip:
                    x0, x1 = w - x1, w - x0
                if x1 - x0 < 4 or y1 - y0 < 4:
                    continue
                box = (int(x0) + 1, int(y0) + 1, min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1))))
                objects.append((cls, box, difficult, truncated))
            stem = f"{year}_{i:06d}"
            Image.fromarray(np.ascontiguousarray(image)).save(voc_dir / "JPEGImages" / f"{stem}.jpg", quality=90)
            depth = 1 if image.ndim == 2 else 3
            (voc_dir / "Annotations" / f"{stem}.xml").write_text(_voc_xml(stem, voc_dir.name, w, h, depth, objects))
            written[stem] = [(c, b, d) for c, b, d, _ in objects]
            ids.append(stem)
            i += 1
        (voc_dir / "ImageSets/Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return written


def write_voc2012_photo_tree(root: Path, n_train: int = 4, n_val: int = 2, seed: int = 0) -> Path:
    """VOC2012 as downloaded, without SBD: ``JPEGImages/`` (real photographs, other sizes per image),
    ``SegmentationClass/`` palette PNGs and ``ImageSets/Segmentation/{train,val,trainval}.txt``; no
    SegmentationClassAug, no aug.txt. The objects follow the photo: its brighter-than-Otsu pixels (of
    grayscale, blurred) are one VOC class (1-3 by image), the rest background, with 255 borders 2 px wide."""
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    photos, names = _photos(), {"train": [], "val": []}
    for i in range(n_train + n_val):
        split = "train" if i < n_train else "val"
        h, w = SIZES[i % len(SIZES)]
        photo = cv2.resize(photos[i % len(photos)], (w, h), interpolation=cv2.INTER_AREA)
        grey = cv2.GaussianBlur(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), (5, 5), 0)
        fg = grey > threshold_otsu(grey)
        edge = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
        label = np.where(fg, 1 + i % 3, 0).astype(np.uint8)
        label[edge] = 255
        stem = f"2012_{int(rng.integers(0, 10**6)):06d}_{i}"
        Image.fromarray(photo).save(root / "JPEGImages" / f"{stem}.jpg", quality=90)
        png = Image.frombytes("P", (w, h), label.tobytes())
        png.putpalette(VOC_PALETTE)
        png.save(root / "SegmentationClass" / f"{stem}.png")
        names[split].append(stem)
    sets = root / "ImageSets/Segmentation"
    for split, stems in (*names.items(), ("trainval", names["train"] + names["val"])):
        (sets / f"{split}.txt").write_text("\n".join(stems) + "\n")
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


def photo_training_batch(
    batch_size: int, view_size: int = 128, raw_size: int = 128, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A training batch of the bundled photos (repeated with other crops past six) made as the loader makes
    it: two augmented views, their boxes, the raw view and its SLIC superpixels (100 segments).
    Returns (views float[B,2,3,S,S], boxes float[B,2,5], raw float[B,3,R,R], superpixels int64[B,R,R])."""
    from r2o_pretrain.data.dataset import collate
    from r2o_pretrain.data.device_augment import batch_on_device
    from r2o_pretrain.data.superpixels import slic_labels
    from r2o_pretrain.data.views import TwoViewTransform

    photos = _photos()
    transform = TwoViewTransform(view_size=view_size, raw_size=raw_size)
    samples = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(batch_size):
            sample = transform(Image.fromarray(photos[i % len(photos)]))
            sample["superpixels"] = torch.from_numpy(slic_labels(sample.pop("raw_rgb")))
            samples.append({**sample, "index": i, "skipped": []})
    return batch_on_device(collate(samples), "cpu")


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


def write_photo_folder(root: Path, n: int = 12, size: tuple[int, int] = (72, 96), seed: int = 0) -> Path:
    """A user's own folder of photographs, not the demo: ``n`` random crops of scikit-image's bundled photos
    resized to ``size`` (h, w), as JPEGs in ``root`` and a ``more/`` subfolder (a recursive listing)."""
    h, w = size
    rng = np.random.default_rng(seed)
    photos = _photos()
    for i in range(n):
        photo = photos[i % len(photos)]
        ph, pw = photo.shape[:2]
        ch, cw = int(ph * rng.uniform(0.5, 1.0)), int(pw * rng.uniform(0.5, 1.0))
        y, x = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
        crop = cv2.resize(photo[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_AREA)
        folder = root / ("more" if i % 3 == 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop).save(folder / f"photo_{i:03d}.jpg", quality=92)
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
