"""Unsupervised segmentation: the metric on hand-made masks, the fg rule, layouts and CLI error paths."""

import importlib.util
import json
import re

import numpy as np
import pytest
import torch
from conftest import ROOT, run_main, run_tool
from PIL import Image

from r2o_pretrain.eval.unsup_seg import (
    EvalDataError,
    Pair,
    Scores,
    border_fraction,
    check_pair,
    choose_foreground,
    evaluate,
    fg_bg_iou,
    iou,
    list_pairs,
    oracle_foreground,
    read_gt_mask,
)


def test_iou_on_hand_made_masks():
    a = np.zeros((4, 4), bool)
    a[:2, :2] = True  # 4 px
    b = np.zeros((4, 4), bool)
    b[:2, :3] = True  # 6 px, 4 shared
    assert iou(a, b) == pytest.approx(4 / 6)
    fg, bg = fg_bg_iou(a, b)
    assert fg == pytest.approx(4 / 6) and bg == pytest.approx(10 / 12)
    assert iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    s = Scores()
    s.add(a, b)
    s.add(b, b)
    assert s.fg_iou == pytest.approx((4 / 6 + 1) / 2)
    assert s.miou == pytest.approx(((4 / 6 + 1) / 2 + (10 / 12 + 1) / 2) / 2)


def test_fg_rule_picks_the_cluster_touching_the_border_least():
    labels = np.zeros((6, 6), int)
    labels[2:4, 2:4] = 1  # a centred object: cluster 1 never touches the border
    assert border_fraction(labels == 1) == 0 and border_fraction(labels == 0) == 1
    np.testing.assert_array_equal(choose_foreground(labels), labels == 1)
    np.testing.assert_array_equal(choose_foreground(1 - labels), labels == 1)  # ids do not matter
    # oracle: the assignment that matches the truth
    gt = labels == 0
    np.testing.assert_array_equal(oracle_foreground(labels, gt), gt)


def test_soft_and_binary_masks(tmp_path):
    soft = np.array([[0, 100, 128, 255]], dtype=np.uint8)
    Image.fromarray(soft).save(tmp_path / "soft.png")
    assert read_gt_mask(tmp_path / "soft.png").tolist() == [[False, False, True, True]]
    Image.fromarray(np.array([[0, 1]], dtype=np.uint8)).save(tmp_path / "bin.png")
    assert read_gt_mask(tmp_path / "bin.png").tolist() == [[False, True]]
    Image.fromarray(np.array([[0, 65535, 65535, 20000]], dtype=np.uint16)).save(tmp_path / "16bit.png")
    assert read_gt_mask(tmp_path / "16bit.png").tolist() == [[False, True, True, False]]  # at half of 65535
    Image.fromarray(np.array([[0, 200, 200, 100]], dtype=np.uint16)).save(tmp_path / "16bit_low.png")
    assert read_gt_mask(tmp_path / "16bit_low.png").tolist() == [[False, True, True, True]]  # ids, not 0-255
    # a label map in greyscale (VOC SegmentationClassAug: class ids, 255 void borders): ids are foreground
    label = np.array([[0, 15, 15, 15, 255, 3, 0]], dtype=np.uint8)
    Image.fromarray(label).save(tmp_path / "aug.png")
    assert read_gt_mask(tmp_path / "aug.png").tolist() == [[False, True, True, True, False, True, False]]
    Image.fromarray(label).convert("P").save(tmp_path / "aug_p.png")  # the same, converted to P: a grey palette
    assert read_gt_mask(tmp_path / "aug_p.png").tolist() == [[False, True, True, True, False, True, False]]
    # masks in the alpha channel of one colour (a cut-out export), dark or white
    for rgb in ((0, 0, 0), (255, 255, 255)):
        rgba = np.zeros((1, 3, 4), np.uint8)
        rgba[..., :3] = rgb
        rgba[..., 3] = [0, 255, 255]
        Image.fromarray(rgba).save(tmp_path / "alpha.png")
        assert read_gt_mask(tmp_path / "alpha.png").tolist() == [[False, True, True]], rgb
    Image.fromarray(np.array([[[0, 0], [0, 255], [0, 200]]], dtype=np.uint8), mode="LA").save(tmp_path / "la.png")
    assert read_gt_mask(tmp_path / "la.png").tolist() == [[False, True, True]]
    grey_rgb = np.repeat(soft[..., None], 3, axis=2)  # a soft mask saved as RGB: thresholded, not "non-black"
    Image.fromarray(grey_rgb).save(tmp_path / "grey_rgb.png")
    assert read_gt_mask(tmp_path / "grey_rgb.png").tolist() == [[False, False, True, True]]
    # a colour-coded export: any colour is an object, however dark (VOC's pottedplant is (0, 64, 0))
    colour = np.array([[[0, 0, 0], [0, 64, 0], [128, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    assert read_gt_mask(tmp_path / "colour.png").tolist() == [[False, True, True, True]]


def test_palette_masks_are_read_by_index_not_brightness(r2o_checkpoint, tmp_path):
    """VOC palette PNGs (class ids with 255 void borders) and binary masks saved with a palette: the
    foreground is the objects' indices, even where their palette colour is dark."""
    from user_data import VOC_PALETTE, write_voc_palette_tree

    root = write_voc_palette_tree(tmp_path / "VOC2012", n_train=3, n_val=0)
    for png in sorted((root / "SegmentationClass").glob("*.png")):
        label = np.asarray(Image.open(png))
        assert Image.open(png).mode == "P" and {0, 255} <= set(np.unique(label).tolist())
        np.testing.assert_array_equal(read_gt_mask(png), (label != 0) & (label != 255))
        assert read_gt_mask(png).sum() > 0
    for ids in ([0, 1], [0, 255]):  # 0/1 and 0/255 binary masks saved as palette PNGs
        png = Image.frombytes("P", (2, 1), bytes(ids))
        png.putpalette(VOC_PALETTE)
        png.save(tmp_path / "binary_p.png")
        assert read_gt_mask(tmp_path / "binary_p.png").tolist() == [[False, True]], ids
    soft = Image.frombytes("P", (4, 1), bytes([0, 100, 128, 255]))  # a soft mask saved with a grey palette
    soft.putpalette([v for i in range(256) for v in (i, i, i)])
    soft.save(tmp_path / "soft_p.png")
    assert Image.open(tmp_path / "soft_p.png").mode == "P"
    assert read_gt_mask(tmp_path / "soft_p.png").tolist() == [[False, False, True, True]]
    # the tool on the VOC tree as it is: JPEGImages + SegmentationClass pair by file stem
    pairs = list_pairs(root / "JPEGImages", root / "SegmentationClass")
    assert len(pairs.pairs) == 3 and not pairs.problems
    res = evaluate(None, pairs.pairs, size=64, n_segments=20)
    assert len(res.rule.fg) == 3 and 0 < res.oracle.fg_iou <= 1
    # as in VOC2012, most JPEGImages have no mask: the tool counts them past the first 10 and scores the rest
    for i in range(12):
        Image.new("RGB", (40, 30)).save(root / "JPEGImages" / f"2027_{i:06d}.jpg")
    args = ["--checkpoint", str(r2o_checkpoint), "--size", "64", "--n-segments", "20", "--no-colour"]
    folders = ["--images", str(root / "JPEGImages"), "--masks", str(root / "SegmentationClass")]
    r = run_main("tools/eval_unsup_seg.py", *args, *folders)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("warning: missing mask") == 10 and "... and 2 more such problems" in r.stderr
    assert "unsupervised object segmentation: 3 images" in r.stdout


def test_undecodable_and_mismatched_pairs_name_the_file(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "a.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(masks / "a.png")
    check_pair(Pair(images / "a.png", masks / "a.png"))
    whole = (images / "a.png").read_bytes()
    (images / "a.png").write_bytes(whole[: len(whole) // 2])  # its header reads, its pixels do not
    with pytest.raises(EvalDataError, match=r"image .*a\.png: cannot decode image"):
        check_pair(Pair(images / "a.png", masks / "a.png"))
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "a.png")
    (masks / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(EvalDataError, match=r"mask .*a\.png: cannot decode image"):
        check_pair(Pair(images / "a.png", masks / "a.png"))


def make_cub(root):
    (root / "images/001.Bird").mkdir(parents=True)
    (root / "segmentations/001.Bird").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines, split = [], []
    for i in range(1, 5):
        rel = f"001.Bird/bird_{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / "images" / rel)
        if i != 4:  # bird_4's mask is missing
            m = np.zeros((40, 48), np.uint8)
            m[10:30, 10:30] = 200
            Image.fromarray(m).save(root / "segmentations" / rel.replace(".jpg", ".png"))
        lines.append(f"{i} {rel}")
        split.append(f"{i} {1 if i == 1 else 0}")
    (root / "images.txt").write_text("\n".join(lines) + "\n")
    (root / "train_test_split.txt").write_text("\n".join(split) + "\n")
    return root


def test_cub_layout_and_missing_masks(tmp_path):
    root = make_cub(tmp_path / "CUB_200_2011")
    listing = list_pairs(root / "images", root / "segmentations", "test")
    assert [p.image.name for p in listing.pairs] == ["bird_2.jpg", "bird_3.jpg"]
    assert len(listing.problems) == 1 and "bird_4.png" in listing.problems[0]
    assert [p.image.name for p in list_pairs(root / "images", root / "segmentations", "train").pairs] == ["bird_1.jpg"]


def test_cli_on_demo_fg_masks(r2o_checkpoint, demo_dir, tmp_path):
    # in process (its main()); the script itself answers --help in test_docs.py
    r = run_main(
        "tools/eval_unsup_seg.py",
        "--checkpoint",
        str(r2o_checkpoint),
        "--images",
        str(demo_dir / "fg_masks/images"),
        "--masks",
        str(demo_dir / "fg_masks/masks"),
        "--size",
        "64",
        "--n-segments",
        "30",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert re.fullmatch(r"mIoU \d+\.\d\d", lines[-1])
    assert any(line.startswith("random init") for line in lines) and any(
        line.startswith("checkpoint") for line in lines
    )


def test_cli_reports_problems_by_name(r2o_checkpoint, tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rgb = np.zeros((32, 32, 3), np.uint8)
    Image.fromarray(rgb).save(images / "a.png")
    Image.fromarray(rgb).save(images / "b.png")
    Image.fromarray(rgb).save(images / "c.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(masks / "a.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(masks / "b.png")  # wrong size
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(masks / "orphan.png")
    r = run_main(
        "tools/eval_unsup_seg.py",
        "--checkpoint",
        str(r2o_checkpoint),
        "--images",
        str(images),
        "--masks",
        str(masks),
        "--size",
        "32",
        "--n-segments",
        "10",
    )
    assert r.returncode == 0, r.stderr
    assert "c.png" in r.stderr and "orphan.png" in r.stderr and "b.png is 16x16" in r.stderr
    assert "warning: 1 of 1 masks have no foreground as read at 32 px" in r.stderr  # a.png's mask is all zeros
    r = run_main(
        "tools/eval_unsup_seg.py",
        "--checkpoint",
        str(r2o_checkpoint),
        "--images",
        str(masks / "none"),
        "--masks",
        str(masks),
    )
    assert r.returncode == 2 and "is not a folder" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_main(
        "tools/eval_unsup_seg.py", "--checkpoint", str(r2o_checkpoint), "--images", str(empty), "--masks", str(masks)
    )
    assert r.returncode == 2 and "no image/mask pairs" in r.stderr
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"nope")
    r = run_main("tools/eval_unsup_seg.py", "--checkpoint", str(bad), "--images", str(images), "--masks", str(masks))
    assert r.returncode == 2 and str(bad) in r.stderr


def test_visualize_regions_cli(r2o_checkpoint, demo_dir, tmp_path):
    imgs = sorted((demo_dir / "images").glob("*.jpg"))[:2]
    out = tmp_path / "regions.png"
    r = run_tool(
        "tools/visualize_regions.py",
        "--checkpoint",
        str(r2o_checkpoint),
        *map(str, imgs),
        "--out",
        str(out),
        "--size",
        "64",
        "--ks",
        "16",
        "4",
    )
    assert r.returncode == 0, r.stderr
    w, h = Image.open(out).size
    assert w == 4 * 160 and h == 18 + 2 * 160  # image | superpixels | K=16 | K=4, one row per image
    # the rest through the same main() in this process (the command line above ran once)
    r = run_main("tools/visualize_regions.py", "--checkpoint", str(r2o_checkpoint), str(tmp_path / "missing.jpg"))
    assert r.returncode == 2 and "missing.jpg" in r.stderr
    # across the curriculum: several training checkpoints, no --ks -> one column each, at its epoch's K
    out.unlink()
    r = run_main(
        "tools/visualize_regions.py", "--checkpoint", str(r2o_checkpoint), "--checkpoint", str(r2o_checkpoint),
        *map(str, imgs), "--out", str(out), "--size", "64",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (4 * 160, 18 + 2 * 160)
    r = run_main("tools/visualize_regions.py", "--run", str(r2o_checkpoint.parents[1]), *map(str, imgs))
    assert r.returncode == 2 and "keep_every_epochs=1" in r.stderr  # the test run kept no epoch_*.pth


def test_curriculum_point_is_the_k_training_used(r2o_checkpoint, tmp_path):
    spec = importlib.util.spec_from_file_location("visualize_regions", ROOT / "tools/visualize_regions.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    last = json.loads((r2o_checkpoint.parents[1] / "metrics.jsonl").read_text().splitlines()[-1])
    assert tool.curriculum_point(str(r2o_checkpoint)) == (last["epoch"], last["k"])
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "plain.pth")
    assert tool.curriculum_point(str(tmp_path / "plain.pth")) is None


def test_make_demo_data_cli(tmp_path):
    r = run_tool(
        "tools/make_demo_data.py", str(tmp_path / "d"), "--train", "3", "--val", "2", "--fg", "2", "--size", "64"
    )
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "d/images").glob("*.jpg"))) == 3 and (tmp_path / "d/instances_val.json").is_file()
