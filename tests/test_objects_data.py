"""The real-photo object scenes on tiny assets this test makes itself (no download): stamp rules, exact
alpha masks with occlusion, object-disjoint splits, and the formats read by pycocotools, detectron2,
mmseg and eval_unsup_seg."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from r2o_pretrain.scenes import objects as objs


def _photo_stamp(rng: np.random.Generator, h: int, w: int, soft: bool = True) -> np.ndarray:
    """uint8[h,w,4]: noisy colours (passes the colour rule) in a left-right symmetric ellipse."""
    yy, xx = np.mgrid[:h, :w]
    r = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2
    alpha = np.clip((1.0 - r) * 6, 0, 1) if soft else (r < 1).astype(float)
    rgb = rng.integers(0, 256, size=(h, w, 3))
    return np.dstack([rgb, np.rint(alpha * 255)]).astype(np.uint8)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> tuple[Path, Path]:
    """(stamps folder, background photo): 2 photo stamps in each of 3 categories, plus stamps the rules drop."""
    root = tmp_path_factory.mktemp("assets")
    stamps = root / "stamps"
    rng = np.random.default_rng(0)
    for folder in ("animals/mammals", "food/fruit", "vehicles"):
        (stamps / folder).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(_photo_stamp(rng, 44 + 4 * i, 40)).save(stamps / folder / f"s{i}.png")
    for rel in ("animals/birds/bird.png", "symbols/a.png", "food/fruit/cartoon/apple.png"):
        (stamps / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_photo_stamp(rng, 48, 48)).save(stamps / rel)
    flat = np.zeros((48, 48, 4), np.uint8)
    flat[8:40, 8:40] = (200, 30, 30, 255)  # clip-art: one flat colour
    Image.fromarray(flat).save(stamps / "vehicles/flat.png")
    Image.fromarray(_photo_stamp(rng, 20, 30)).save(stamps / "vehicles/tiny.png")  # longest side < 40
    bg = root / "photo.jpg"
    grad = np.linspace(0, 255, 300)[None, :, None] * np.ones((200, 1, 3))
    Image.fromarray((grad * [0.3, 0.8, 0.5] + rng.normal(0, 10, (200, 300, 3))).clip(0, 255).astype(np.uint8)).save(bg)
    return stamps, bg


@pytest.fixture(scope="module")
def dataset(assets, tmp_path_factory) -> tuple[Path, dict]:
    stamps, bg = assets
    out = tmp_path_factory.mktemp("objects")
    kw = dict(size=64, seed=0, num_pretrain=6, num_train=6, num_val=4, num_val_single=3, stamps_root=stamps)
    meta = objs.write_objects_dataset(out, out, workers=2, background_files=[bg], log=lambda *_: None, **kw)
    return out, meta


def test_stamp_rules_keep_photographs_and_leave_out_birds_symbols_cartoons_flat_and_tiny(assets):
    kept, report = objs.select_stamps(assets[0])
    assert sorted(s.rel for s in kept) == sorted(
        f"{f}/s{i}.png" for f in ("animals/mammals", "food/fruit", "vehicles") for i in range(2)
    )
    assert report == {"png_files": 11, "folder_rule": 3, "colour_rule": 2, "kept": 6}
    assert {objs.CLASSES[s.category - 1] for s in kept} == {"mammal", "fruit", "vehicle"}
    assert objs.category_of("animals/birds/x.png") is None and objs.category_of("animals/mammals/cats/x.png") == 3
    assert 10 <= len(objs.CLASSES) <= 15
    train, val = objs.split_stamps(kept, seed=0)
    assert not {s.rel for s in train} & {s.rel for s in val} and len(train) == len(val) == 3


def test_paste_masks_follow_alpha_and_later_objects_occlude():
    rng = np.random.default_rng(1)
    a, b = _photo_stamp(rng, 20, 24), _photo_stamp(rng, 16, 16)
    canvas, owner = np.zeros((40, 40, 3), np.float32), np.zeros((40, 40), np.int32)
    objs.paste(canvas, owner, a, 5, 6, 1)
    objs.paste(canvas, owner, b, 15, 20, 2)
    full_a = np.zeros((40, 40), bool)
    full_a[5:25, 6:30] = a[..., 3] >= 128
    full_b = np.zeros((40, 40), bool)
    full_b[15:31, 20:36] = b[..., 3] >= 128
    np.testing.assert_array_equal(owner == 2, full_b)
    np.testing.assert_array_equal(owner == 1, full_a & ~full_b)
    assert (full_a & full_b).any()  # the test really has an occlusion
    opaque = np.zeros((40, 40), bool)
    opaque[15:31, 20:36] = b[..., 3] == 255
    np.testing.assert_allclose(canvas[opaque], b[..., :3][b[..., 3] == 255])  # opaque pixels: the stamp's colour


def test_mask_rule_fills_specks_but_keeps_large_holes():
    alpha = np.zeros((30, 30), np.uint8)
    alpha[2:28, 2:28] = 255
    alpha[5, 5] = 100  # a speck of partial alpha: filled
    alpha[10:20, 10:20] = 0  # a hole of 100 px (> 2 % of the area): kept
    mask = objs.object_mask(alpha)
    assert mask[5, 5] and not mask[10:20, 10:20].any() and mask.sum() == 26 * 26 - 100


def test_scene_mask_is_exactly_the_thresholded_alpha(assets):
    stamps, bg = assets
    rgba = objs.load_stamp(stamps / "vehicles/s0.png")  # 44x40, symmetric: mirroring does not change it
    gen = objs.ObjectSceneGenerator({"s": rgba}, {"s": 7}, [objs.load_background(bg)], size=64)
    s0 = max(rgba.shape[:2])
    scene = gen.scene(np.random.default_rng(3), ["s"], 1, scale=((s0 + 0.5) / 64, (s0 + 0.5) / 64))
    (ins,) = scene.instances
    assert ins.category == 7 and scene.stamps == ["s"]
    got = np.argwhere(ins.mask)
    want = np.argwhere(objs.object_mask(rgba[..., 3]))
    assert (objs.object_mask(rgba[..., 3]) == (rgba[..., 3] >= 128)).all()  # no holes in this stamp
    np.testing.assert_array_equal(got - got.min(0), want - want.min(0))
    multi = gen.scene(np.random.default_rng(4), ["s"], 4)
    masks = np.stack([i.mask for i in multi.instances])
    assert masks.sum(0).max() == 1 and (masks.sum((1, 2)) * 2 >= (rgba[..., 3] >= 128).sum() * 0.2).all()


def test_splits_are_disjoint_in_objects_and_deterministic(assets, dataset, tmp_path):
    out, meta = dataset
    assert not set(meta["stamps"]["train"]) & set(meta["stamps"]["val"])
    assert not any("birds" in s for s in meta["stamps"]["train"] + meta["stamps"]["val"])
    assert len(list((out / "pretrain/images").glob("*.jpg"))) == 6
    assert objs.objects_dataset_ready(out)
    again = objs.write_objects_dataset(
        tmp_path, tmp_path, size=64, seed=0, num_pretrain=0, num_train=6, num_val=1, num_val_single=1,
        workers=1, stamps_root=assets[0], background_files=[assets[1]], log=lambda *_: None,
    )  # fmt: skip
    assert again["stamps"] == meta["stamps"]
    assert (tmp_path / "train/instances.json").read_text() == (out / "train/instances.json").read_text()


def test_coco_polygons_match_the_class_pngs(dataset):
    from pycocotools.coco import COCO

    out, _ = dataset
    for split in ("train", "val"):
        coco = COCO(str(out / split / "instances.json"))
        assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == set(objs.CLASSES)
        n_poly = 0
        for img in coco.loadImgs(coco.getImgIds()):
            png = np.asarray(Image.open(out / split / "SegmentationClass" / img["file_name"].replace(".jpg", ".png")))
            painted = np.zeros_like(png)
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
                assert ann["iscrowd"] == 0 and ann["area"] > 0
                n_poly += isinstance(ann["segmentation"], list)
                painted[coco.annToMask(ann) > 0] = ann["category_id"]
            inside = png != 255
            assert (painted[inside] == png[inside]).mean() > 0.99  # equal up to polygon rasterisation at borders
        assert n_poly > 0


def test_detectron2_reads_the_coco_json(dataset):
    pytest.importorskip("detectron2")
    from detectron2.data.datasets import load_coco_json

    out, _ = dataset
    records = load_coco_json(str(out / "train/instances.json"), str(out / "train/JPEGImages"), "objects_test_train")
    assert len(records) == 6 and all(Path(r["file_name"]).is_file() for r in records)
    assert sum(len(r["annotations"]) for r in records) == len(
        json.loads((out / "train/instances.json").read_text())["annotations"]
    )


def test_mmseg_config_reads_the_voc_pngs(dataset):
    pytest.importorskip("mmseg")
    from mmengine.config import Config
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules

    register_all_modules()
    out, _ = dataset
    os.environ["R2O_DATA_ROOT"] = str(out)
    try:
        cfg = Config.fromfile(str(ROOT / "configs/r2o_fcn_objects.py"))
    finally:
        del os.environ["R2O_DATA_ROOT"]
    assert cfg.metainfo["classes"] == ("background", *objs.CLASSES) and cfg.num_classes == 1 + len(objs.CLASSES)
    for split, loader, n in (("train", cfg.train_dataloader, 6), ("val", cfg.val_dataloader, 4)):
        ds = DATASETS.build(dict(loader.dataset, pipeline=[dict(type="LoadAnnotations")]))
        assert len(ds) == n
        item = ds[0]
        png = np.asarray(Image.open(item["seg_map_path"]))
        np.testing.assert_array_equal(item["gt_seg_map"], png)
        assert Path(item["seg_map_path"]).parent == out / split / "SegmentationClass"


def test_eval_unsup_seg_reads_val_single(dataset):
    from r2o_pretrain.eval.unsup_seg import list_pairs, read_gt_mask

    out, _ = dataset
    listing = list_pairs(out / "val_single/images", out / "val_single/masks")
    assert len(listing.pairs) == 3 and not listing.problems
    for pair in listing.pairs:
        gt = read_gt_mask(pair.mask)
        assert gt.shape == (64, 64) and 0 < gt.sum() < 64 * 64
