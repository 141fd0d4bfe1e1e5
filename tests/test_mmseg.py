"""mmseg plugin: the demo config trained from an R2O checkpoint on the demo export (its R2ORunner built in process
as `mim train mmseg` builds it, the same --cfg-options; the real `mim train` command lines run in
test_cityscapes_e2e.py and test_roundtrip_mmseg.py), and palette-PNG reading. The VOC config's train -> test -> resume round trip on palette PNGs is in
test_roundtrip_mmseg.py; Cityscapes from polygons (cityscapesscripts) through `mim test` in test_cityscapes_e2e.py;
every config field against the authors' files in test_transfer_configs.py."""

import re

import numpy as np
from conftest import ROOT, run_tool
from PIL import Image

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

# The VOC config shrunk to ResNet-18 with 64 px crops (the images keep their own sizes, x U(0.5, 2) in
# training, as they are at test), checkpoint and validation every 2 iterations.
SMALL_VOC = [
    *R18,
    "model.auxiliary_head.in_channels=256",
    "model.auxiliary_head.channels=32",
    "crop_size=(64,64)",
    "model.data_preprocessor.size=(64,64)",
    "train_dataloader.dataset.datasets.0.pipeline.3.crop_size=(64,64)",
    "train_dataloader.dataset.datasets.1.pipeline.3.crop_size=(64,64)",
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


def cfg_options(*options: str) -> dict:
    """``--cfg-options KEY=VALUE ...`` as mmseg's tools/train.py (under ``mim train``) parses them: mmengine's
    DictAction; for ``cfg.merge_from_dict`` on a config built in process."""
    import argparse

    from mmengine.config import DictAction

    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(["--cfg-options", *options]).cfg_options


def runner_log(runner) -> str:
    """What an mmengine runner logged so far (its log file: what ``mim train`` prints)."""
    from pathlib import Path

    return Path(runner.log_dir, f"{runner.timestamp}.log").read_text()


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


def test_demo_config_trains_on_the_demo_voc_export(r2o_checkpoint, demo_dir, tmp_path, monkeypatch):
    from test_mmseg_protocols_e2e import train_in_process

    options = (
        "train_cfg.max_iters=2",
        "train_cfg.val_interval=2",
        "train_dataloader.num_workers=0",
        "val_dataloader.num_workers=0",
        "train_dataloader.persistent_workers=False",
        "val_dataloader.persistent_workers=False",
    )
    text = train_in_process(
        "r2o_fcn_demo.py", tmp_path / "work", monkeypatch, r2o_checkpoint, demo_dir / "voc", *options
    )
    assert "every backbone tensor was loaded" in text and re.search(r"mIoU: \d", text)
