"""mmseg plugin: `mim train mmseg` with the real configs from an R2O checkpoint, on generated
Cityscapes-layout data (label ids made with cityscapesscripts), the demo export, and palette-PNG reading.
The VOC config's train -> test -> resume round trip on palette PNGs is in test_roundtrip_mmseg.py."""

import json
import re

import numpy as np
from conftest import ROOT, run_tool
from PIL import Image, ImageDraw

R18 = [
    "model.backbone.depth=18",
    "model.decode_head.in_channels=512",
    "model.decode_head.channels=64",
    "train_dataloader.batch_size=2",
    "train_dataloader.num_workers=0",
    "train_dataloader.persistent_workers=False",
    "val_dataloader.num_workers=0",
    "val_dataloader.persistent_workers=False",
]

# The VOC config shrunk to ResNet-18 at 64 px, checkpoint and validation every 2 iterations.
SMALL_VOC = [
    *R18,
    "model.auxiliary_head.in_channels=256",
    "model.auxiliary_head.channels=32",
    "crop_size=(64,64)",
    "model.data_preprocessor.size=(64,64)",
    "train_dataloader.dataset.datasets.0.pipeline.2.scale=(128,64)",
    "train_dataloader.dataset.datasets.1.pipeline.2.scale=(128,64)",
    "train_dataloader.dataset.datasets.0.pipeline.3.crop_size=(64,64)",
    "train_dataloader.dataset.datasets.1.pipeline.3.crop_size=(64,64)",
    "val_dataloader.dataset.pipeline.1.scale=(128,96)",
    "default_hooks.checkpoint.interval=2",
    "train_cfg.val_interval=2",
]


def mim_train(config, work_dir, checkpoint, data_root, *options, resume=False):
    args = ["-m", "mim", "train", "mmseg", config, "--work-dir", str(work_dir), "--gpus", "0"]
    if resume:
        args.append("--resume")
    return run_tool(
        *args,
        "--cfg-options",
        *options,
        env={"R2O_CHECKPOINT": str(checkpoint), "R2O_DATA_ROOT": str(data_root)},
        timeout=1200,
    )


def cityscapes_layout(root, n_train=4, n_val=2):
    """Tiny Cityscapes tree with polygon annotations; label PNGs are left to cityscapesscripts."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "leftImg8bit" / split / "demo").mkdir(parents=True)
        (root / "gtFine" / split / "demo").mkdir(parents=True)
        for i in range(n):
            w, h = 128, 64
            stem = f"demo_{i:06d}_000019"
            img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            draw = ImageDraw.Draw(img)
            sky = [[0, 0], [w, 0], [w, 20], [0, 20]]
            road = [[0, 40], [w, 40], [w, h], [0, h]]
            x = int(rng.integers(10, 90))
            car = [[x, 25], [x + 30, 25], [x + 30, 45], [x, 45]]
            for poly, colour in ((sky, (70, 130, 180)), (road, (128, 64, 128)), (car, (0, 0, 142))):
                draw.polygon([tuple(p) for p in poly], fill=colour)
            img.save(root / "leftImg8bit" / split / "demo" / f"{stem}_leftImg8bit.png")
            objects = [
                {"label": "sky", "polygon": sky},
                {"label": "road", "polygon": road},
                {"label": "car", "polygon": car},
            ]
            (root / "gtFine" / split / "demo" / f"{stem}_gtFine_polygons.json").write_text(
                json.dumps({"imgHeight": h, "imgWidth": w, "objects": objects})
            )
    return root


def test_cityscapes_config_trains_on_labels_made_by_cityscapesscripts(r2o_checkpoint, tmp_path):
    root = cityscapes_layout(tmp_path / "cityscapes")
    r = run_tool("-m", "cityscapesscripts.preparation.createTrainIdLabelImgs", env={"CITYSCAPES_DATASET": str(root)})
    assert r.returncode == 0, r.stderr[-2000:]
    label = root / "gtFine/train/demo/demo_000000_000019_gtFine_labelTrainIds.png"
    ids = set(np.unique(np.asarray(Image.open(label))).tolist())
    assert ids <= {0, 10, 13, 255} and {0, 10, 13} <= ids  # road, sky, car; unlabeled → 255
    small = [
        *R18,
        "crop_size=(64,64)",
        "model.data_preprocessor.size=(64,64)",
        "train_dataloader.dataset.pipeline.2.scale=(128,64)",
        "train_dataloader.dataset.pipeline.3.crop_size=(64,64)",
        "val_dataloader.dataset.pipeline.1.scale=(128,64)",
        "model.test_cfg.crop_size=(64,64)",
        "model.test_cfg.stride=(48,48)",
        "train_cfg.max_epochs=1",
        "train_cfg.val_interval=1",
    ]
    r = mim_train("configs/r2o_fcn_cityscapes.py", tmp_path / "work", r2o_checkpoint, root, *small)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text[-4000:]
    assert "every backbone tensor was loaded" in text
    assert re.search(r"mIoU: \d", text)


def test_voc_palette_pngs_with_borders_read_as_class_ids(demo_dir):
    from mmseg.datasets.transforms import LoadAnnotations

    png = demo_dir / "voc/SegmentationClass/train_0000.png"
    assert Image.open(png).mode == "P"
    out = LoadAnnotations()({"seg_map_path": str(png), "reduce_zero_label": False, "seg_fields": []})
    expected = np.asarray(Image.open(png))
    np.testing.assert_array_equal(out["gt_seg_map"], expected)
    assert set(np.unique(out["gt_seg_map"]).tolist()) <= {0, 1, 2, 3, 4, 255} and 255 in out["gt_seg_map"]


def test_plugin_registers_once_and_reads_every_format(tmp_path):
    import importlib

    import torch
    import torchvision
    from mmseg.registry import MODELS

    import r2o_mmseg

    importlib.reload(r2o_mmseg)  # importing (even re-executing) the plugin twice is harmless
    net = torchvision.models.resnet18()
    from test_weights import official_checkpoint

    torch.save(official_checkpoint(net), tmp_path / "official.pth")
    backbone = MODELS.build(
        dict(
            type="R2OResNet",
            depth=18,
            style="pytorch",
            init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "official.pth")),
        )
    )
    backbone.init_weights()
    assert backbone.load_report.complete and len(backbone.load_report.loaded) == 100
    torch.testing.assert_close(backbone.conv1.weight, net.conv1.weight)
    # a torchvision-only name that mmseg/mmcv also know must not collide
    assert "ResNet" in MODELS.module_dict and MODELS.module_dict["R2OResNet"] is not MODELS.module_dict["ResNet"]


def test_demo_config_parses_with_env(tmp_path):
    import os

    from mmengine.config import Config

    os.environ["R2O_CHECKPOINT"] = "/x/ckpt.pth"
    try:
        cfg = Config.fromfile(str(ROOT / "configs/r2o_fcn_voc.py"))
    finally:
        del os.environ["R2O_CHECKPOINT"]
    assert cfg.model.backbone.init_cfg.checkpoint == "/x/ckpt.pth"
    assert cfg.model.backbone.strides == (1, 2, 2, 1) and cfg.model.backbone.dilations == (1, 1, 1, 2)
    assert cfg.model.decode_head.dilation == 6 and cfg.model.auxiliary_head.loss_decode.loss_weight == 0.2
    city = Config.fromfile(str(ROOT / "configs/r2o_fcn_cityscapes.py"))
    assert city.model.auxiliary_head is None and city.model.decode_head.align_corners is True
    assert city.train_dataloader.dataset.data_root == "data/cityscapes"


def test_demo_config_trains_on_the_demo_voc_export(r2o_checkpoint, demo_dir, tmp_path):
    r = mim_train(
        "configs/r2o_fcn_demo.py",
        tmp_path / "work",
        r2o_checkpoint,
        demo_dir / "voc",
        "train_cfg.max_iters=2",
        "train_cfg.val_interval=2",
        "train_dataloader.num_workers=0",
        "val_dataloader.num_workers=0",
        "train_dataloader.persistent_workers=False",
        "val_dataloader.persistent_workers=False",
    )
    text = r.stdout + r.stderr
    assert r.returncode == 0, text[-4000:]
    assert "every backbone tensor was loaded" in text and re.search(r"mIoU: \d", text)
