"""Cityscapes as a new user meets it: real photographs with Cityscapes polygon annotations →
cityscapesscripts' ``createTrainIdLabelImgs`` (the command docs/transfer_mmseg.md gives) → ``mim train`` → ``mim test`` on
``configs/r2o_fcn_cityscapes.py``, shrunk only by ``--cfg-options``. The printed mIoU covers the 19 classes and
ignores the 255 pixels: it is recomputed here from the predictions ``mim test --out`` writes."""

from __future__ import annotations

import re

import numpy as np
from conftest import run_tool
from PIL import Image
from test_mmseg import R18, mim_train
from user_data import CITYSCAPES_TRAIN_IDS, write_cityscapes_polygon_tree

CITYSCAPES_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

# configs/r2o_fcn_cityscapes.py at ResNet-18, 64x128 photos, crop 64, one epoch of 2 iterations (4 images, batch 2)
SMALL_CITYSCAPES = [
    *R18,
    "crop_size=(64,64)",
    "model.data_preprocessor.size=(64,64)",
    "train_dataloader.dataset.pipeline.2.scale=(128,64)",
    "train_dataloader.dataset.pipeline.3.crop_size=(64,64)",
    "val_dataloader.dataset.pipeline.1.scale=(128,64)",
    "test_dataloader.dataset.pipeline.1.scale=(128,64)",
    "train_cfg.max_epochs=1",
    "train_cfg.val_interval=10",
    "randomness.seed=0",
]


def _table(text: str) -> dict[str, float]:
    """mmseg's per-class PrettyTable (| Class | IoU | Acc |) → {class: IoU}; nan for absent classes."""
    rows = re.findall(r"^\|\s*([a-z ]+?)\s*\|\s*(nan|[\d.]+)\s*\|\s*(nan|[\d.]+)\s*\|$", text, re.MULTILINE)
    return {name: float(iou) for name, iou, _ in rows}


def test_cityscapes_polygons_to_train_ids_to_mim_train_and_mim_test(r2o_checkpoint, tmp_path):
    root = write_cityscapes_polygon_tree(tmp_path / "cityscapes", n_train=4, n_val=2)
    # the preparation command of docs/transfer_mmseg.md, as a user runs it
    r = run_tool("-m", "cityscapesscripts.preparation.createTrainIdLabelImgs", env={"CITYSCAPES_DATASET": str(root)})
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    polygons = sorted(root.glob("gtFine/*/*/*_gtFine_polygons.json"))
    labels = [p.with_name(p.name.replace("_polygons.json", "_labelTrainIds.png")) for p in polygons]
    assert len(labels) == 6 and all(p.is_file() for p in labels)
    gt = {p.name.replace("_gtFine_labelTrainIds.png", ""): np.asarray(Image.open(p)) for p in labels}
    ids = set().union(*(np.unique(m).tolist() for m in gt.values()))
    assert ids == set(CITYSCAPES_TRAIN_IDS.values())  # every drawn label, 255 for ego vehicle / unlabelled
    for m in gt.values():
        assert m.shape == (64, 128) and 0.05 < (m == 255).mean() < 0.5

    work = tmp_path / "work"
    r = mim_train("configs/r2o_fcn_cityscapes.py", work, r2o_checkpoint, root, *SMALL_CITYSCAPES)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text[-4000:]
    assert "every backbone tensor was loaded" in text
    checkpoint = work / "epoch_1.pth"
    assert checkpoint.is_file()
    assert re.search(r"\(train\) \[2/2\]", text)  # 4 images, batch 2: two iterations (mmseg logs by iteration)

    out = tmp_path / "pred"
    r = run_tool(
        "-m",
        "mim",
        "test",
        "mmseg",
        "configs/r2o_fcn_cityscapes.py",
        "--checkpoint",
        str(checkpoint),
        "--work-dir",
        str(tmp_path / "test"),
        "--out",
        str(out),
        "--cfg-options",
        *SMALL_CITYSCAPES,
        env={"R2O_DATA_ROOT": str(root)},
        timeout=900,
    )
    text = r.stdout + r.stderr
    assert r.returncode == 0, text[-4000:]
    assert f"Load checkpoint from {checkpoint}" in text  # the training checkpoint, message hub included
    table = _table(text)
    assert tuple(table) == CITYSCAPES_CLASSES  # the 19 classes, in trainId order
    miou = float(re.search(r"mIoU: ([\d.]+)", text).group(1))
    aacc = float(re.search(r"aAcc: ([\d.]+)", text).group(1))

    # recompute from the saved predictions (val: the two frankfurt images), ignoring 255 as IoUMetric should
    intersect, union, correct, labelled, total = np.zeros(19), np.zeros(19), 0, 0, 0
    for stem in ("frankfurt_000004_000019", "frankfurt_000005_000019"):
        pred = np.asarray(Image.open(out / f"{stem}_leftImg8bit.png")).astype(np.int64)
        label = gt[stem].astype(np.int64)
        assert pred.shape == label.shape and pred.max() < 19
        keep = label != 255
        p, g = pred[keep], label[keep]
        i = np.bincount(g[p == g], minlength=19)
        intersect += i
        union += np.bincount(p, minlength=19) + np.bincount(g, minlength=19) - i
        correct, labelled, total = correct + int(i.sum()), labelled + int(keep.sum()), total + label.size
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = intersect / union
    for k, name in enumerate(CITYSCAPES_CLASSES):
        expected = round(100 * iou[k], 2)
        assert (np.isnan(expected) and np.isnan(table[name])) or abs(table[name] - expected) < 0.011, name
    assert abs(miou - round(100 * float(np.nanmean(iou)), 2)) < 0.011
    # aAcc counts only labelled pixels; counting the ignored ones would give another number
    assert correct > 0 and labelled < total
    assert abs(aacc - round(100 * correct / labelled, 2)) < 0.011
    assert abs(aacc - 100 * correct / total) > 0.5
