"""Real-photo object scenes: photographic cut-outs (Tux Paint stamps) pasted on crops of real photographs.

Assets come from Debian packages (``scripts/get_object_assets.sh``); ``python tools/make_objects_data.py
OUT`` is the command line of ``write_objects_dataset``. Rules, all stated here once:

* **Stamps kept** (``select_stamps``): folder rule first — the whole ``animals/birds`` folder is left out
  (reserved for an evaluation this project does not see), and so are ``symbols/`` (letters, chess, money,
  maths), ``town/roadsigns``, ``town/flags``, every ``cartoon`` folder and folders without a category
  (people, military other than vehicles, natural forces). Then a colour rule keeps photographs and drops
  drawings: over the fully opaque pixels, the fraction of pixels equal to their right and lower neighbours
  (``flat``; clip-art is made of flat fills) must be < 0.05 and the entropy of the 15-bit colour histogram
  (``entropy``; clip-art has few distinct colours) >= 5 bits; the stamp's longest side must be >= 40 px.
* **Categories**: 13 coarse classes from the stamp folders (``CATEGORY_RULES``, first matching prefix).
* **Splits**: stamps are split per category (a quarter to val, at least one when a category has two) with
  the dataset seed; ``pretrain`` and ``train`` scenes use train stamps only, ``val`` and ``val_single``
  val stamps only. Backgrounds (33 photographs, ``BACKGROUND_PHOTOS``) are shared by all splits.
* **Scenes**: a random crop (side 20-100 % of the photo's short side, random position, random flip) of a
  random photograph, resized to SIZE², then 1-4 stamps (longest side 30-70 % of SIZE; single-object scenes
  40-80 %) at random positions, randomly mirrored, alpha-composited in order.
* **Masks**: a pixel belongs to an object where the object's resized alpha is >= 128 (the object gives at
  least half of the pixel's colour), plus enclosed holes of that region smaller than 2 % of its area
  (specks of partial alpha inside fur or leaves; large holes such as a racket's strings stay holes);
  a later object takes its pixels from earlier ones (occlusion). A
  placement that would leave an earlier object with less than half of its pixels, or an object with fewer
  than ``min_pixels``, is redrawn (20 tries, then the object is not pasted), so every pasted object is
  labelled.
* **COCO segmentation**: polygons (outline of each connected part, from the mask), except where the polygons
  cannot express the mask (holes, or rasterised polygons with IoU < 0.9 against it): then uncompressed RLE.

Layout of OUT:

    pretrain/images/*.jpg                       unlabelled scenes
    {train,val}/JPEGImages/*.jpg                labelled scenes
    {train,val}/SegmentationClass/*.png         VOC palette PNGs: class ids, 255 on object borders
    {train,val}/ImageSets/Segmentation/{train,val}.txt
    {train,val}/instances.json                  COCO instances (category per object, iscrowd 0)
    val_single/images/*.jpg, val_single/masks/*.png   one-object scenes + binary masks (eval_unsup_seg.py)
    objects.json                                what was written, stamps per split, counts, timings
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.draw import polygon2mask
from skimage.measure import find_contours

from .export import Instance, Scene, coco_instances, rle_encode, save_class_png, save_fg_mask, voc_palette

VERSION = 2
STAMPS_DIR = "tuxpaint-stamps-default/usr/share/tuxpaint/stamps"
_PLASMA = "plasma-workspace-wallpapers/usr/share/wallpapers/{}/contents/images/2560x1600.jpg"
_MATE = "mate-backgrounds/usr/share/backgrounds/mate/nature/{}.jpg"
_LOMIRI = "lomiri-wallpapers-16.04/usr/share/backgrounds/{}.jpg"
# Photographs only: the other files of these packages are abstract or rendered art. Of lomiri's photographs,
# free (a bird), friends (dogs: a foreground class) and Picture_0B (a fig: a foreground class) are left out,
# and analogpattern (a texture). Backgrounds still show things (flowers, a clock, cups): they are background.
BACKGROUND_PHOTOS: tuple[str, ...] = (
    *(
        _MATE.format(n)
        for n in (
            "Aqua Blinds Dune FreshFlower Garden GreenMeadow LadyBird RainDrops Storm TwoWings Wood YellowFlower"
        ).split()
    ),
    *(
        _PLASMA.format(n)
        for n in "BytheWater ColdRipple ColorfulCups DarkestHour EveningGlow FallenLeaf Grey Kite OneStandsOut Path summer_1am".split()
    ),
    *(
        _LOMIRI.format(n)
        for n in (
            "Bridge_by_Sander_Klootwijk Dragonfly_by_Bolly Picture_1A_by_freespace "
            "Wine_by_Jakkub_Mede aitzgorri_by_Aitzol_Berasategi "
            "greentock_by_Peter_Nerlich life_by_Aitzol_Berasategi picosdeeuropa_by_Aitzol_Berasategi "
            "seeding_by_Clements_Engelhardt sunset_by_Aitzol_Berasategi"
        ).split()
    ),
)
RESERVED_FOLDER = "animals/birds"
EXCLUDED_PREFIXES = (RESERVED_FOLDER, "symbols", "town/roadsigns", "town/flags")
CATEGORY_RULES: tuple[tuple[str, str], ...] = (
    ("animals/fish", "sea_animal"),
    ("animals/shellfish", "sea_animal"),
    ("animals/insects", "small_animal"),
    ("animals/amphibians", "small_animal"),
    ("animals/lizards", "small_animal"),
    ("animals/mammals", "mammal"),
    ("animals/marsupials", "mammal"),
    ("food/fruit", "fruit"),
    ("food/nuts", "fruit"),
    ("food/vegetables", "vegetable"),
    ("food/spices", "vegetable"),
    ("plants/eggplant", "vegetable"),
    ("plants", "plant"),
    ("vehicles", "vehicle"),
    ("military/vehicles", "vehicle"),
    ("household/tools", "tool"),
    ("household/arttools", "tool"),
    ("medical", "tool"),
    ("household", "household"),
    ("clothes", "household"),
    ("town", "household"),
    ("hobbies", "instrument_hobby"),
    ("sports", "sports"),
    ("space", "space"),
    ("seasonal", "festive"),
)
CLASSES: tuple[str, ...] = tuple(dict.fromkeys(name for _, name in CATEGORY_RULES))  # 1-based ids
MAX_FLAT_FRACTION = 0.05
MIN_COLOUR_ENTROPY = 5.0
MIN_LONGEST_SIDE = 40
BACKGROUND_MAX_SIDE = 1024  # photographs are downscaled once to this longest side before cropping


class AssetsError(RuntimeError):
    """The assets folder lacks files; the message names them and says what to run."""


# ----------------------------------------------------------------------------- stamp selection
@dataclass(frozen=True)
class Stamp:
    rel: str  # path under the stamps folder, e.g. "food/fruit/kiwi.png"
    category: int  # 1-based index into CLASSES


@dataclass(frozen=True)
class StampStats:
    flat_fraction: float  # opaque pixels equal to their right and lower neighbour
    colour_entropy: float  # bits, 15-bit colour histogram of opaque pixels
    longest_side: int


def stamp_stats(rgba: np.ndarray) -> StampStats:
    """uint8[H,W,4] → colour statistics over the fully opaque pixels (nan when fewer than 2x2 are)."""
    opaque = rgba[..., 3] == 255
    rgb = rgba[..., :3].astype(np.int32)
    side = int(max(rgba.shape[:2]))
    both = opaque[:-1, :-1] & opaque[1:, :-1] & opaque[:-1, 1:]
    if not both.any():
        return StampStats(float("nan"), float("nan"), side)
    same = (rgb[1:, :-1] == rgb[:-1, :-1]).all(-1) & (rgb[:-1, 1:] == rgb[:-1, :-1]).all(-1)
    q = rgb[opaque] // 8
    _, counts = np.unique(q[:, 0] * 1024 + q[:, 1] * 32 + q[:, 2], return_counts=True)
    p = counts / counts.sum()
    return StampStats(float(same[both].mean()), float(-(p * np.log2(p)).sum()), side)


def is_photograph(stats: StampStats) -> bool:
    """The colour rule: not flat fills, enough colours, big enough (nan statistics fail)."""
    return (
        stats.flat_fraction < MAX_FLAT_FRACTION
        and stats.colour_entropy >= MIN_COLOUR_ENTROPY
        and stats.longest_side >= MIN_LONGEST_SIDE
    )


def category_of(rel: str) -> int | None:
    """1-based class id of a stamp path by the folder rules; None when its folder is left out."""
    parts = rel.split("/")
    if "cartoon" in parts[:-1] or any(rel == p or rel.startswith(p + "/") for p in EXCLUDED_PREFIXES):
        return None
    for prefix, name in CATEGORY_RULES:
        if rel.startswith(prefix + "/") or rel.startswith(prefix + "."):
            return CLASSES.index(name) + 1
    return None


def select_stamps(stamps_root: Path) -> tuple[list[Stamp], dict[str, int]]:
    """Stamps that pass the folder and colour rules, sorted by path, and counts of what was left out."""
    files = sorted(stamps_root.rglob("*.png"))
    if not files:
        raise AssetsError(f"no PNG stamps under {stamps_root}: run scripts/get_object_assets.sh first")
    kept, report = [], {"png_files": len(files), "folder_rule": 0, "colour_rule": 0}
    for path in files:
        rel = path.relative_to(stamps_root).as_posix()
        category = category_of(rel)
        if category is None:
            report["folder_rule"] += 1
            continue
        if not is_photograph(stamp_stats(np.asarray(Image.open(path).convert("RGBA")))):
            report["colour_rule"] += 1
            continue
        kept.append(Stamp(rel, category))
    report["kept"] = len(kept)
    return kept, report


def split_stamps(stamps: Sequence[Stamp], seed: int, val_fraction: float = 0.25) -> tuple[list[Stamp], list[Stamp]]:
    """Per category, a seeded quarter of the stamps to val (>= 1 when the category has >= 2); disjoint."""
    rng = np.random.default_rng([seed, 7])
    train, val = [], []
    for c in range(1, len(CLASSES) + 1):
        group = [s for s in stamps if s.category == c]
        order = rng.permutation(len(group))
        n_val = 0 if len(group) < 2 else max(1, round(val_fraction * len(group)))
        val += [group[i] for i in order[:n_val]]
        train += [group[i] for i in order[n_val:]]
    return sorted(train, key=lambda s: s.rel), sorted(val, key=lambda s: s.rel)


def background_paths(assets: Path) -> list[Path]:
    """The background photographs under ``assets``; AssetsError naming the missing ones."""
    paths = [assets / rel for rel in BACKGROUND_PHOTOS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise AssetsError(
            f"{len(missing)} background photographs missing under {assets} (first: {missing[0]}): "
            f"run scripts/get_object_assets.sh {assets}"
        )
    return paths


def load_background(path: Path, max_side: int = BACKGROUND_MAX_SIDE) -> np.ndarray:
    """uint8[H,W,3], downscaled so that the longest side is at most ``max_side``."""
    img = Image.open(path)
    img.draft("RGB", (max_side, max_side))
    img = img.convert("RGB")
    img.thumbnail((max_side, max_side), Image.LANCZOS)
    return np.asarray(img)


def load_stamp(path: Path) -> np.ndarray:
    """uint8[h,w,4] cropped to the box of its non-transparent pixels."""
    rgba = np.asarray(Image.open(path).convert("RGBA"))
    ys, xs = np.nonzero(rgba[..., 3])
    return rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].copy()


# ----------------------------------------------------------------------------- compositing (pure numpy)
def object_mask(alpha: np.ndarray, max_hole: float = 0.02) -> np.ndarray:
    """uint8[h,w] alpha → bool[h,w]: alpha >= 128, with enclosed holes smaller than ``max_hole`` x its area
    filled (the mask rule)."""
    mask = alpha >= 128
    holes, n = ndimage.label(ndimage.binary_fill_holes(mask) & ~mask)
    if n:
        sizes = np.bincount(holes.ravel(), minlength=n + 1)
        small = np.flatnonzero(sizes < max_hole * mask.sum())
        mask = mask | np.isin(holes, small[small > 0])
    return mask


def paste(canvas: np.ndarray, owner: np.ndarray, rgba: np.ndarray, y: int, x: int, index: int) -> None:
    """Alpha-composite uint8[h,w,4] ``rgba`` onto float32[H,W,3] ``canvas`` at (y, x), in place; the pixels of
    its ``object_mask`` become ``index`` in int32[H,W] ``owner`` (the occlusion-aware instance map)."""
    h, w = rgba.shape[:2]
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    region = canvas[y : y + h, x : x + w]
    region *= 1 - alpha
    region += alpha * rgba[..., :3]
    owner[y : y + h, x : x + w][object_mask(rgba[..., 3])] = index


def resize_stamp(rgba: np.ndarray, longest: int, mirror: bool) -> np.ndarray:
    """uint8[h,w,4] → uint8[h',w',4] with max(h',w') = longest (Pillow resamples RGBA premultiplied)."""
    h, w = rgba.shape[:2]
    s = longest / max(h, w)
    img = Image.fromarray(rgba).resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
    out = np.asarray(img)
    return out[:, ::-1].copy() if mirror else out


@dataclass
class ObjectScene(Scene):
    stamps: list[str] = field(default_factory=list)  # stamp path per instance
    segmentations: list = field(default_factory=list)  # COCO segmentation per instance, when computed


class ObjectSceneGenerator:
    """Draws scenes from loaded stamps and backgrounds; all randomness comes from the numpy Generator."""

    def __init__(
        self,
        stamps: dict[str, np.ndarray],
        categories: dict[str, int],
        backgrounds: Sequence[np.ndarray],
        size: int = 160,
        min_pixels: int = 64,
    ) -> None:
        self.stamps, self.categories, self.backgrounds = stamps, categories, list(backgrounds)
        self.size, self.min_pixels = size, min_pixels

    def background(self, rng: np.random.Generator) -> np.ndarray:
        photo = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        h, w = photo.shape[:2]
        side = int(rng.integers(max(8, int(0.2 * min(h, w))), min(h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((self.size, self.size), Image.BILINEAR)
        out = np.asarray(crop)
        return out[:, ::-1] if rng.random() < 0.5 else out

    def scene(
        self, rng: np.random.Generator, pool: Sequence[str], n_objects: int, scale: tuple[float, float] = (0.3, 0.7)
    ) -> ObjectScene:
        s = self.size
        canvas = self.background(rng).astype(np.float32)
        owner = np.zeros((s, s), dtype=np.int32)
        placed: list[tuple[str, int]] = []  # (stamp, full area)
        for _ in range(n_objects):
            name = pool[int(rng.integers(len(pool)))]
            rgba = resize_stamp(self.stamps[name], int(rng.uniform(*scale) * s), bool(rng.random() < 0.5))
            h, w = rgba.shape[:2]
            mask = object_mask(rgba[..., 3])
            area = int(mask.sum())
            if area < self.min_pixels or h > s or w > s:
                continue
            k = len(placed) + 1
            for _try in range(20):
                y, x = int(rng.integers(0, s - h + 1)), int(rng.integers(0, s - w + 1))
                trial = owner.copy()
                trial[y : y + h, x : x + w][mask] = k
                if all((trial == j).sum() * 2 >= a for j, (_, a) in enumerate(placed, 1)):
                    paste(canvas, owner, rgba, y, x, k)
                    placed.append((name, area))
                    break
        instances = [Instance(self.categories[n], owner == j) for j, (n, _) in enumerate(placed, 1)]
        image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        return ObjectScene(image, instances, [n for n, _ in placed])


# ----------------------------------------------------------------------------- COCO polygons
def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """bool[H,W] → COCO polygons [x0, y0, x1, y1, ...], one per outline of a connected part (pixel-edge
    coordinates: pixel (r, c) spans [c, c+1) x [r, r+1))."""
    padded = np.pad(mask.astype(np.float32), 1)
    polys = []
    for contour in find_contours(padded, 0.5):
        if len(contour) < 4:
            continue
        yx = contour - 1 + 0.5  # undo the padding; pixel centres sit at +0.5 in COCO coordinates
        polys.append([float(round(v, 2)) for pt in yx[:, ::-1] for v in pt])
    return [p for p in polys if len(p) >= 6]


def rasterise_polygons(polys: list[list[float]], shape: tuple[int, int]) -> np.ndarray:
    """COCO polygons → bool[H,W] (pixel centres inside; skimage's rasteriser)."""
    out = np.zeros(shape, dtype=bool)
    for p in polys:
        xy = np.asarray(p).reshape(-1, 2)
        out ^= polygon2mask(shape, xy[:, ::-1] - 0.5)
    return out


def segmentation(mask: np.ndarray) -> list | dict:
    """Polygons when they express the mask (no holes, rasterised IoU >= 0.9), else uncompressed RLE."""
    if (ndimage.binary_fill_holes(mask) != mask).any():
        return rle_encode(mask)
    polys = mask_to_polygons(mask)
    back = rasterise_polygons(polys, mask.shape)
    union = (back | mask).sum()
    return polys if polys and (back & mask).sum() >= 0.9 * union else rle_encode(mask)


# ----------------------------------------------------------------------------- dataset writer
_GEN: ObjectSceneGenerator | None = None  # set in the parent before forking the worker pool


def _scene_task(args: tuple) -> ObjectScene | None:
    """Worker: draw scene ``index`` of a split (seeded by (seed, split, index)) and write its image."""
    seed, split_id, index, pool, n_range, scale, path, keep = args
    rng = np.random.default_rng([seed, split_id, index])
    assert _GEN is not None
    scene = _GEN.scene(rng, pool, int(rng.integers(n_range[0], n_range[1] + 1)), scale)
    Image.fromarray(scene.image).save(path, quality=92)
    if not keep:
        return None
    scene.segmentations = [segmentation(ins.mask) for ins in scene.instances]
    return scene


def _run(tasks: list[tuple], workers: int) -> list:
    if workers <= 1:
        return [_scene_task(t) for t in tasks]
    ctx = mp.get_context("fork")
    with ctx.Pool(workers) as pool:
        return pool.map(_scene_task, tasks, chunksize=max(1, len(tasks) // (8 * workers)))


def write_objects_dataset(
    out_dir: str | Path,
    assets: str | Path,
    size: int = 160,
    seed: int = 0,
    num_pretrain: int = 10000,
    num_train: int = 2000,
    num_val: int = 500,
    num_val_single: int = 300,
    workers: int = 0,
    stamps_root: str | Path | None = None,
    background_files: Sequence[str | Path] | None = None,
    log=print,
) -> dict:
    """Write every split under ``out_dir`` (deterministic for given arguments, any worker count); returns
    the metadata also written to ``out_dir/objects.json``. ``stamps_root`` / ``background_files`` override the
    Debian asset locations (tests use small folders of their own)."""
    global _GEN
    t0 = time.time()
    out, assets = Path(out_dir), Path(assets)
    root = Path(stamps_root) if stamps_root else assets / STAMPS_DIR
    bg_paths = [Path(p) for p in background_files] if background_files else background_paths(assets)
    kept, report = select_stamps(root)
    train_stamps, val_stamps = split_stamps(kept, seed)
    if not train_stamps or not val_stamps:
        raise AssetsError(f"too few stamps under {root} to split into train and val ({len(kept)} kept)")
    loaded = {s.rel: load_stamp(root / s.rel) for s in kept}
    cats = {s.rel: s.category for s in kept}
    _GEN = ObjectSceneGenerator(loaded, cats, [load_background(p) for p in bg_paths], size)
    log(
        f"{report['kept']} of {report['png_files']} stamps kept ({report['folder_rule']} by folder, "
        f"{report['colour_rule']} by colour); {len(train_stamps)} train / {len(val_stamps)} val; "
        f"{len(bg_paths)} background photos ({time.time() - t0:.1f} s)"
    )
    workers = workers or mp.cpu_count()
    train_pool, val_pool = [s.rel for s in train_stamps], [s.rel for s in val_stamps]
    timings = {}

    t = time.time()
    pre = out / "pretrain/images"
    pre.mkdir(parents=True, exist_ok=True)
    _run(
        [
            (seed, 0, i, train_pool, (1, 4), (0.3, 0.7), pre / f"pretrain_{i:05d}.jpg", False)
            for i in range(num_pretrain)
        ],
        workers,
    )
    timings["pretrain_s"] = round(time.time() - t, 1)
    log(f"pretrain: {num_pretrain} scenes in {timings['pretrain_s']} s with {workers} workers")

    palette = voc_palette()
    counts = {}
    for split_id, (split, n, pool) in enumerate((("train", num_train, train_pool), ("val", num_val, val_pool)), 1):
        t = time.time()
        d = out / split
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        names = [f"{split}_{i:05d}" for i in range(n)]
        scenes = _run(
            [
                (seed, split_id, i, pool, (1, 4), (0.3, 0.7), d / "JPEGImages" / f"{nm}.jpg", True)
                for i, nm in enumerate(names)
            ],
            workers,
        )
        for scene, nm in zip(scenes, names):
            save_class_png(scene, d / "SegmentationClass" / f"{nm}.png", palette)
        computed = iter([seg for scene in scenes for seg in scene.segmentations])  # same order as coco_instances
        coco = coco_instances(
            scenes, [f"{nm}.jpg" for nm in names], CLASSES, "object", lambda _m, it=computed: next(it)
        )
        (d / "instances.json").write_text(json.dumps(coco))
        (d / "ImageSets/Segmentation" / f"{split}.txt").write_text("".join(nm + "\n" for nm in names))
        counts[split] = {
            "images": n,
            "objects": len(coco["annotations"]),
            "polygons": sum(isinstance(a["segmentation"], list) for a in coco["annotations"]),
        }
        timings[f"{split}_s"] = round(time.time() - t, 1)
        log(f"{split}: {n} scenes, {counts[split]['objects']} objects in {timings[f'{split}_s']} s")

    t = time.time()
    single = out / "val_single"
    (single / "images").mkdir(parents=True, exist_ok=True)
    (single / "masks").mkdir(parents=True, exist_ok=True)
    scenes = _run(
        [
            (seed, 3, i, val_pool, (1, 1), (0.4, 0.8), single / "images" / f"single_{i:05d}.jpg", True)
            for i in range(num_val_single)
        ],
        workers,
    )
    for i, scene in enumerate(scenes):
        mask = scene.instances[0].mask if scene.instances else np.zeros(scene.image.shape[:2], bool)
        save_fg_mask(mask, single / "masks" / f"single_{i:05d}.png")
    timings["val_single_s"] = round(time.time() - t, 1)
    _GEN = None

    meta = {
        "version": VERSION,
        "size": size,
        "seed": seed,
        "classes": list(CLASSES),
        "counts": {"pretrain": num_pretrain, **counts, "val_single": num_val_single},
        "stamps": {"report": report, "train": train_pool, "val": val_pool},
        "backgrounds": [str(p) for p in bg_paths],
        "mask_rule": "alpha >= 128 after resizing, holes < 2 % of the area filled; later objects occlude earlier ones",
        "timings": {**timings, "total_s": round(time.time() - t0, 1), "workers": workers},
    }
    (out / "objects.json").write_text(json.dumps(meta, indent=1))
    return meta


def objects_dataset_ready(out_dir: str | Path) -> bool:
    """True when ``out_dir`` holds a complete object dataset of the current version."""
    try:
        return json.loads((Path(out_dir) / "objects.json").read_text()).get("version") == VERSION
    except (OSError, ValueError):
        return False
