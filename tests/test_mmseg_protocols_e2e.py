"""Each mmseg protocol config trains 2 iterations and evaluates on real-format data that is not the demo's:
UperNet on an ADE20K tree (real photographs, single-channel label PNGs with 0 = ignored) from a torchvision-layout
ResNet-50 state dict (the supervised baseline's file format), DeepLabV3+ on VOC palette PNGs with 255 borders and
on Cityscapes made from polygons by cityscapesscripts, and the linear probe, whose backbone must not move. Shrunk
only in sizes (crops, widths, ResNet-18 where the weights allow). Every training here builds the config's own
runner (``R2ORunner``) in this process as mmseg's tools/train.py does (the DeepLabV3+ Cityscapes one from the same
``--cfg-options`` a user would type); the real ``mim train`` / ``mim test`` through Cityscapes polygons is
tests/test_cityscapes_e2e.py's."""

from __future__ import annotations

import math
import re

import torch
from conftest import ROOT
from test_mmseg import R18, cfg_options, runner_log
from user_data import write_ade20k_tree, write_cityscapes_polygon_tree, write_voc_palette_tree


def _pipelines(cfg):
    train = cfg.train_dataloader.dataset
    for dataset in train.get("datasets", [train]):
        yield dataset.pipeline
    yield cfg.val_dataloader.dataset.pipeline
    yield cfg.test_dataloader.dataset.pipeline


def _shrink(cfg) -> None:
    """Crops of 64 px, (random) resizes to (128, 64) keeping the ratio or 64 x 64 where the config does not keep
    it; batch 2, no worker processes, no checkpoint files, a log line per iteration."""
    for pipeline in _pipelines(cfg):
        for t in pipeline:
            if t["type"] in ("RandomResize", "Resize"):
                t["scale"] = (128, 64) if t.get("keep_ratio", True) else (64, 64)
            elif t["type"] == "RandomCrop":
                t["crop_size"] = (64, 64)
            elif t["type"] in ("Pad", "TorchvisionRandomResizedCrop"):
                t["size"] = (64, 64)
    cfg.model.data_preprocessor.size = (64, 64)
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        cfg[loader].num_workers = 0
        cfg[loader].persistent_workers = False
    cfg.train_dataloader.batch_size = 2
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=-1, save_last=False)
    cfg.default_hooks.logger.interval = 1
    cfg.randomness = dict(seed=0)


def build_runner(config: str, work_dir, monkeypatch, edit, **env: str):
    """The config as ``mim train`` reads it (environment variables, custom_imports), edited by ``edit(cfg)``, and
    its runner built through mmengine's RUNNERS by ``runner_type`` from mmseg's RUNNERS."""
    from mmengine.config import Config
    from mmseg.registry import RUNNERS  # where r2o_mmseg registers R2ORunner (mim resolves it through mmseg's scope)

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = Config.fromfile(str(ROOT / "configs" / config))
    edit(cfg)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f"{work_dir.parent.name}_{work_dir.name}"  # one logger / visualizer per test
    cfg.visualizer.name = cfg.experiment_name  # mmseg's runtime names it "visualizer": one instance per process
    assert cfg.runner_type == "R2ORunner"
    runner = RUNNERS.build(cfg)
    assert type(runner).__name__ == "R2ORunner"
    return runner


def train_in_process(config: str, work_dir, monkeypatch, checkpoint, data_root, *options: str) -> str:
    """``R2O_CHECKPOINT=.. R2O_DATA_ROOT=.. mim train mmseg configs/CONFIG --cfg-options OPTIONS`` in this
    process (the config's runner from ``build_runner``): the log it wrote, what ``mim train`` prints."""
    runner = build_runner(
        config,
        work_dir,
        monkeypatch,
        lambda cfg: cfg.merge_from_dict(cfg_options(*options)),
        R2O_CHECKPOINT=str(checkpoint),
        R2O_DATA_ROOT=str(data_root),
    )
    runner.train()
    return runner_log(runner)


def _train_and_val(runner) -> dict:
    """Train (2 iterations); mmengine's loop validates after the last one: the metrics it logged."""
    runner.train()
    assert runner.iter == 2
    loss = runner.message_hub.get_scalar("train/loss").current()
    assert math.isfinite(loss) and loss > 0
    metrics = {k: runner.message_hub.get_scalar(f"val/{k}").current() for k in ("aAcc", "mIoU", "mAcc")}
    assert all(0.0 <= v <= 100.0 for v in metrics.values()), metrics  # finite, in range (not NaN)
    return metrics


def test_upernet_ade20k_from_a_torchvision_state_dict(tmp_path, monkeypatch):
    """The supervised-baseline path of docs/transfer_mmseg.md: a plain torchvision ResNet-50 state dict (here
    resnet50() with random weights, saved as torchvision's IMAGENET1K_V1 file is: a bare state dict with fc)
    into R2OResNet, every tensor equal, then 2 iterations of the UperNet config and an evaluation."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet50()
    state = net.state_dict()
    torch.save(state, tmp_path / "resnet50_torchvision.pth")
    root = write_ade20k_tree(tmp_path / "ADEChallengeData2016", n_train=4, n_val=2)

    def edit(cfg):
        _shrink(cfg)
        cfg.model.decode_head.channels = 64
        cfg.model.auxiliary_head.channels = 32
        cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=2, val_interval=2)

    runner = build_runner(
        "r2o_upernet_ade20k.py",
        tmp_path / "work",
        monkeypatch,
        edit,
        R2O_CHECKPOINT=str(tmp_path / "resnet50_torchvision.pth"),
        R2O_DATA_ROOT=str(root),
    )
    runner.model.init_weights()  # what runner.train() does first (a second call is a no-op)
    backbone = runner.model.backbone
    report = backbone.load_report
    expected = [k for k in state if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    assert report.complete and len(report.loaded) == len(expected) == 265
    loaded = backbone.state_dict()
    for key in expected:
        torch.testing.assert_close(loaded[key], state[key], rtol=0, atol=0, msg=key)
    _train_and_val(runner)
    assert len(runner.val_dataloader.dataset.metainfo["classes"]) == 150


def test_deeplabv3plus_voc_trains_on_palette_pngs(r2o_checkpoint, tmp_path, monkeypatch):
    root = write_voc_palette_tree(tmp_path / "VOC2012")

    def edit(cfg):
        _shrink(cfg)
        cfg.model.backbone.depth = 18
        cfg.model.decode_head.update(in_channels=512, channels=64, c1_in_channels=64, c1_channels=16)
        cfg.model.auxiliary_head.update(in_channels=256, channels=32)
        cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=2, val_interval=2)

    runner = build_runner(
        "r2o_deeplabv3plus_voc.py",
        tmp_path / "work",
        monkeypatch,
        edit,
        R2O_CHECKPOINT=str(r2o_checkpoint),
        R2O_DATA_ROOT=str(root),
    )
    _train_and_val(runner)
    assert runner.model.backbone.load_report.complete  # the R2O pretraining checkpoint, every tensor
    assert len(runner.train_dataloader.dataset) == 12  # train.txt + aug.txt, 6 each


# configs/r2o_deeplabv3plus_cityscapes.py at ResNet-18, 64x128 photos, crop 64, 2 iterations, by --cfg-options
SMALL_DEEPLABV3PLUS_CITYSCAPES = [
    *[o for o in R18 if not o.startswith("model.decode_head")],
    "model.decode_head.in_channels=512",
    "model.decode_head.channels=64",
    "model.decode_head.c1_in_channels=64",
    "model.decode_head.c1_channels=16",
    "model.auxiliary_head.in_channels=256",
    "model.auxiliary_head.channels=32",
    "model.data_preprocessor.size=(64,64)",
    "train_dataloader.dataset.pipeline.2.scale=(128,64)",
    "train_dataloader.dataset.pipeline.3.crop_size=(64,64)",
    "val_dataloader.dataset.pipeline.1.scale=(128,64)",
    "test_dataloader.dataset.pipeline.1.scale=(128,64)",
    "train_cfg.max_iters=2",
    "train_cfg.val_interval=2",
    "default_hooks.checkpoint.interval=2",
    "randomness.seed=0",
]


def test_deeplabv3plus_cityscapes_trains_from_polygons(r2o_checkpoint, tmp_path, monkeypatch):
    from cityscapesscripts.preparation import createTrainIdLabelImgs

    root = write_cityscapes_polygon_tree(tmp_path / "cityscapes", n_train=4, n_val=2)
    monkeypatch.setenv("CITYSCAPES_DATASET", str(root))
    createTrainIdLabelImgs.main()  # the preparation step of docs/transfer_mmseg.md
    assert len(list(root.glob("gtFine/*/*/*_gtFine_labelTrainIds.png"))) == 6
    work = tmp_path / "work"
    text = train_in_process(
        "r2o_deeplabv3plus_cityscapes.py", work, monkeypatch, r2o_checkpoint, root, *SMALL_DEEPLABV3PLUS_CITYSCAPES
    )
    assert "every backbone tensor was loaded" in text
    assert re.search(r"Iter\(train\) \[2/2\]", text) and re.search(r"mIoU: \d", text)
    assert (work / "iter_2.pth").is_file()


def _probe_edit(cfg) -> None:
    _shrink(cfg)
    cfg.model.backbone.depth = 18
    cfg.model.decode_head.update(in_channels=512, channels=512)
    cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=1, val_interval=1)


def test_linear_probe_moves_the_head_only(r2o_checkpoint, tmp_path, monkeypatch):
    """2 iterations (4 images, batch 2, one epoch) at lr 0.1: every backbone parameter and BatchNorm running
    statistic (and num_batches_tracked) stays the R2O checkpoint's, bit for bit; the 1x1 conv moves."""
    from r2o_pretrain.weights import read_resnet_weights

    root = write_voc_palette_tree(tmp_path / "VOC2012", n_train=2, n_val=2)
    runner = build_runner(
        "r2o_linear_voc.py",
        tmp_path / "work",
        monkeypatch,
        _probe_edit,
        R2O_CHECKPOINT=str(r2o_checkpoint),
        R2O_DATA_ROOT=str(root),
    )
    model = runner.model
    model.init_weights()
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.decode_head.state_dict().items()}
    assert list(head_before) == ["conv_seg.weight", "conv_seg.bias"]  # one 1x1 conv, nothing else
    assert model.decode_head.conv_seg.kernel_size == (1, 1) and model.decode_head.conv_seg.in_channels == 512
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["decode_head.conv_seg.weight", "decode_head.conv_seg.bias"]
    checkpoint = read_resnet_weights(r2o_checkpoint).state
    for key, value in checkpoint.items():
        torch.testing.assert_close(backbone_before[key], value.to(backbone_before[key].dtype), rtol=0, atol=0)
    assert any(k.endswith("running_mean") for k in checkpoint)  # the statistics are checked too

    _train_and_val(runner)
    model.train()  # as during training: the backbone's BatchNorm layers stay in eval mode
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(m.training for m in bns)
    after = model.backbone.state_dict()
    assert after.keys() == backbone_before.keys()
    for key, value in backbone_before.items():
        assert torch.equal(after[key], value), f"backbone {key} changed"
    head_after = model.decode_head.state_dict()
    for key, value in head_before.items():
        change = (head_after[key] - value).abs().max().item()
        assert change > 1e-4, f"head {key} did not move ({change})"
