"""The mmseg transfer protocols beyond the authors' FCN (configs/r2o_upernet_ade20k.py, r2o_deeplabv3plus_voc.py,
r2o_deeplabv3plus_cityscapes.py, r2o_linear_voc.py), resolved by the real mmengine ``Config`` field by field.

The expected values are written here literally from their sources, not read from them: mmseg 1.2.2's own
configs (upernet/upernet_r50_4xb4-160k_ade20k-512x512.py, deeplabv3plus/deeplabv3plus_r50-d8_4xb4-20k_voc12aug-
512x512.py and ..._4xb2-80k_cityscapes-512x1024.py with their _base_ model, dataset and schedule files) and, for
the linear probe, Leopart's experiments/linear_probing/linear_finetune.py + configs/pascal/densecl.yml. A change
in mmseg's files or in ours makes these fail. Their trainings on real-format data: test_mmseg_protocols_e2e.py."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT

SYNCBN = dict(type="SyncBN", requires_grad=True)
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]

# mmseg _base_/models/upernet_r50.py + upernet_r50_4xb4-160k_ade20k-512x512.py (num_classes 150)
MMSEG_UPERNET = dict(
    backbone=dict(
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 1, 1),
        strides=(1, 2, 2, 2),
        norm_cfg=SYNCBN,
        norm_eval=False,
        style="pytorch",
        contract_dilation=True,
    ),
    decode_head=dict(
        type="UPerHead",
        in_channels=[256, 512, 1024, 2048],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=SYNCBN,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
    ),
    auxiliary_head=dict(
        type="FCNHead",
        in_channels=1024,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=SYNCBN,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.4),
    ),
)
# mmseg _base_/models/deeplabv3plus_r50-d8.py
MMSEG_DEEPLABV3PLUS = dict(
    backbone=dict(MMSEG_UPERNET["backbone"], dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1)),
    decode_head=dict(
        type="DepthwiseSeparableASPPHead",
        in_channels=2048,
        in_index=3,
        channels=512,
        dilations=(1, 12, 24, 36),
        c1_in_channels=256,
        c1_channels=48,
        dropout_ratio=0.1,
        norm_cfg=SYNCBN,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
    ),
    auxiliary_head={k: v for k, v in MMSEG_UPERNET["auxiliary_head"].items() if k != "num_classes"},
)
# mmseg _base_/schedules/schedule_{20k,80k,160k}.py: SGD lr 0.01, momentum 0.9, wd 5e-4, poly 0.9 to 1e-4
MMSEG_OPTIMIZER = dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0005)


def _unscoped(value):
    """The config's values without the ``_scope_`` keys mmengine adds to what a ``mmseg::`` base defines."""
    if isinstance(value, dict):
        return {k: _unscoped(v) for k, v in value.items() if k != "_scope_"}
    if isinstance(value, list):
        return [_unscoped(v) for v in value]
    return value


def _config(name: str, monkeypatch=None, **env: str):
    from mmengine.config import Config, ConfigDict

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return ConfigDict(_unscoped(Config.fromfile(str(ROOT / "configs" / name)).to_dict()))


def _types(pipeline) -> list[str]:
    return [t["type"] for t in pipeline]


def _check_model(cfg, expected: dict, num_classes: int) -> None:
    model = cfg.model
    assert model.backbone.type == "R2OResNet" and model.pretrained is None  # not mmseg's ResNetV1c download
    for key, value in expected["backbone"].items():
        assert model.backbone[key] == value, f"backbone.{key}: {model.backbone[key]} != {value}"
    for part in ("decode_head", "auxiliary_head"):
        for key, value in expected[part].items():
            assert model[part][key] == value, f"{part}.{key}: {model[part][key]} != {value}"
        assert model[part].num_classes == num_classes
    pre = model.data_preprocessor
    assert pre.mean == MEAN and pre.std == STD and pre.bgr_to_rgb is True
    assert pre.pad_val == 0 and pre.seg_pad_val == 255
    assert dict(model.test_cfg) == dict(mode="whole")


def _check_schedule(cfg, iters: int, val_interval: int) -> None:
    assert dict(cfg.optim_wrapper.optimizer) == MMSEG_OPTIMIZER and cfg.optim_wrapper.clip_grad is None
    (poly,) = cfg.param_scheduler
    assert poly.type == "PolyLR" and poly.power == 0.9 and poly.eta_min == 1e-4
    assert poly.begin == 0 and poly.end == iters and poly.by_epoch is False
    assert cfg.train_cfg == dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=val_interval)
    assert cfg.default_hooks.checkpoint.interval == val_interval


def _check_train_pipeline(pipeline, scale, crop, extra=()) -> None:
    assert _types(pipeline) == [
        "LoadImageFromFile",
        "LoadAnnotations",
        "RandomResize",
        "RandomCrop",
        "RandomFlip",
        "PhotoMetricDistortion",
        *extra,
        "PackSegInputs",
    ]
    resize, cropping, flip = pipeline[2], pipeline[3], pipeline[4]
    assert tuple(resize.scale) == scale and tuple(resize.ratio_range) == (0.5, 2.0) and resize.keep_ratio is True
    assert tuple(cropping.crop_size) == crop and cropping.cat_max_ratio == 0.75
    assert flip.prob == 0.5


def _check_test_pipeline(pipeline, scale) -> None:
    assert _types(pipeline) == ["LoadImageFromFile", "Resize", "LoadAnnotations", "PackSegInputs"]
    assert tuple(pipeline[1].scale) == scale and pipeline[1].keep_ratio is True


def test_upernet_ade20k_is_mmsegs_160k_config_with_the_r2o_backbone(monkeypatch):
    cfg = _config("r2o_upernet_ade20k.py", monkeypatch, R2O_CHECKPOINT="/w/r2o.pth")
    _check_model(cfg, MMSEG_UPERNET, num_classes=150)
    assert cfg.model.backbone.init_cfg == dict(type="Pretrained", checkpoint="/w/r2o.pth")
    assert tuple(cfg.model.data_preprocessor.size) == (512, 512)
    train = cfg.train_dataloader
    assert train.batch_size == 4 and train.sampler.type == "InfiniteSampler"  # 4 x 4 GPUs = 16
    assert train.dataset.type == "ADE20KDataset" and train.dataset.data_root == "data/ade/ADEChallengeData2016"
    assert dict(train.dataset.data_prefix) == dict(img_path="images/training", seg_map_path="annotations/training")
    _check_train_pipeline(train.dataset.pipeline, (2048, 512), (512, 512))
    assert train.dataset.pipeline[1].reduce_zero_label is True  # label 0 ("other") -> ignored
    val = cfg.val_dataloader.dataset
    assert dict(val.data_prefix) == dict(img_path="images/validation", seg_map_path="annotations/validation")
    _check_test_pipeline(val.pipeline, (2048, 512))
    assert val.pipeline[2].reduce_zero_label is True
    assert cfg.test_dataloader == cfg.val_dataloader
    _check_schedule(cfg, 160000, 16000)
    assert cfg.runner_type == "R2ORunner" and cfg.custom_imports.imports == ["r2o_mmseg"]


def test_deeplabv3plus_voc_is_mmsegs_20k_voc12aug_config_with_the_r2o_backbone(monkeypatch):
    cfg = _config("r2o_deeplabv3plus_voc.py", monkeypatch, R2O_DATA_ROOT="/data/VOC2012")
    _check_model(cfg, MMSEG_DEEPLABV3PLUS, num_classes=21)
    assert cfg.model.backbone.init_cfg.checkpoint == "none"  # unset R2O_CHECKPOINT: random init, warned
    assert tuple(cfg.model.data_preprocessor.size) == (512, 512)
    train = cfg.train_dataloader
    assert train.batch_size == 4 and train.dataset.type == "ConcatDataset"
    datasets = train.dataset.datasets
    assert [d.data_root for d in datasets] == ["/data/VOC2012"] * 2
    assert [d.data_prefix.seg_map_path for d in datasets] == ["SegmentationClass", "SegmentationClassAug"]
    assert [d.ann_file for d in datasets] == ["ImageSets/Segmentation/train.txt", "ImageSets/Segmentation/aug.txt"]
    for d in datasets:
        assert d.type == "PascalVOCDataset" and d.data_prefix.img_path == "JPEGImages"
        _check_train_pipeline(d.pipeline, (2048, 512), (512, 512), extra=("Pad",))
        assert tuple(d.pipeline[6].size) == (512, 512)
    val = cfg.val_dataloader.dataset
    assert val.data_root == "/data/VOC2012" and val.ann_file == "ImageSets/Segmentation/val.txt"
    _check_test_pipeline(val.pipeline, (2048, 512))
    _check_schedule(cfg, 20000, 2000)


def test_deeplabv3plus_cityscapes_is_mmsegs_80k_config_with_the_r2o_backbone(monkeypatch):
    cfg = _config("r2o_deeplabv3plus_cityscapes.py", monkeypatch)
    _check_model(cfg, MMSEG_DEEPLABV3PLUS, num_classes=19)
    assert tuple(cfg.model.data_preprocessor.size) == (512, 1024)
    train = cfg.train_dataloader
    assert train.batch_size == 2 and train.dataset.type == "CityscapesDataset"  # 2 x 4 GPUs = 8
    assert train.dataset.data_root == "data/cityscapes/"
    assert dict(train.dataset.data_prefix) == dict(img_path="leftImg8bit/train", seg_map_path="gtFine/train")
    _check_train_pipeline(train.dataset.pipeline, (2048, 1024), (512, 1024))
    _check_test_pipeline(cfg.val_dataloader.dataset.pipeline, (2048, 1024))
    _check_schedule(cfg, 80000, 8000)


@pytest.mark.parametrize(
    "name", ["r2o_upernet_ade20k.py", "r2o_deeplabv3plus_voc.py", "r2o_deeplabv3plus_cityscapes.py"]
)
def test_the_backbone_is_v1b_torchvisions_resnet_not_mmsegs_v1c(name):
    """The one architectural departure from mmseg's files: a 7x7 stem (torchvision's ResNet, the R2O backbone)
    instead of V1c's three 3x3 convs; every torchvision ResNet-50 tensor has a place, none is left over."""
    import torchvision
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import r2o_mmseg  # noqa: F401  (the configs' custom_imports)

    init_default_scope("mmseg")
    cfg = _config(name)
    backbone_cfg = dict(cfg.model.backbone, norm_cfg=dict(type="BN", requires_grad=True))
    backbone = MODELS.build(backbone_cfg)
    assert backbone.deep_stem is False and not hasattr(backbone, "stem")
    assert backbone.conv1.kernel_size == (7, 7) and backbone.conv1.stride == (2, 2)
    ours = {k: v.shape for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    tv = torchvision.models.resnet50().state_dict()
    theirs = {k: v.shape for k, v in tv.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    assert ours == theirs  # mmseg's ResNet names its tensors as torchvision does


# Leopart: experiments/linear_probing/linear_finetune.py (LinearFinetune, the transforms, SGD + StepLR) with
# experiments/linear_probing/configs/pascal/densecl.yml (the self-supervised ResNet-50 row)
LEOPART_RESNET50 = dict(
    size_crops=448,
    crop_scale=(0.8, 1.0),
    crop_ratio=(3.0 / 4.0, 4.0 / 3.0),  # torchvision's default, which their RandomResizedCrop keeps
    flip_p=0.5,
    batch_size=60,
    gpus=2,
    lr=0.1,
    momentum=0.9,
    weight_decay=0.0001,
    max_epochs=25,
    drop_at=20,
    decay_rate=0.1,
    num_classes=21,
    ignore_index=255,
    embed_dim=2048,
)


def test_linear_probe_config_is_leopart_resnet50_linear_probe(monkeypatch):
    cfg = _config("r2o_linear_voc.py", monkeypatch, R2O_CHECKPOINT="/w/r2o.pth")
    lp = LEOPART_RESNET50
    backbone = cfg.model.backbone
    assert backbone.type == "R2OResNet" and backbone.depth == 50 and backbone.init_cfg.checkpoint == "/w/r2o.pth"
    # ResnetDilated(resnet50): layer4 without stride, its first 3x3 at dilation 1, the others at 2 (output stride 16)
    assert backbone.strides == (1, 2, 2, 1) and backbone.dilations == (1, 1, 1, 2) and backbone.contract_dilation
    assert backbone.style == "pytorch" and backbone.out_indices == (3,)
    # frozen: the stem and all four stages without gradients, BatchNorm in eval mode (their model.eval() + no_grad)
    assert backbone.frozen_stages == 4 and backbone.norm_eval is True
    head = cfg.model.decode_head
    assert head.type == "FCNHead" and head.num_convs == 0 and head.concat_input is False  # conv_seg alone
    assert head.in_channels == head.channels == lp["embed_dim"] and head.num_classes == lp["num_classes"]
    assert head.dropout_ratio == 0.0 and head.align_corners is False  # nn.Conv2d(2048, 21, 1); F.interpolate
    assert head.loss_decode == dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)
    assert cfg.model.data_preprocessor.mean == MEAN and cfg.model.data_preprocessor.std == STD
    train = cfg.train_dataloader
    assert train.batch_size * 8 == lp["batch_size"] * lp["gpus"] == cfg.auto_scale_lr.base_batch_size
    assert train.drop_last is True and train.sampler.shuffle is True
    for d in train.dataset.datasets:  # trainaug: train.txt (SegmentationClass) + aug.txt (SegmentationClassAug)
        crop = d.pipeline[2]
        assert _types(d.pipeline) == [
            "LoadImageFromFile",
            "LoadAnnotations",
            "TorchvisionRandomResizedCrop",
            "RandomFlip",
            "PackSegInputs",
        ]
        assert tuple(crop.size) == (lp["size_crops"],) * 2 and tuple(crop.scale) == lp["crop_scale"]
        assert tuple(crop.ratio) == pytest.approx(lp["crop_ratio"]) and d.pipeline[3].prob == lp["flip_p"]
    assert [d.ann_file for d in train.dataset.datasets] == [
        "ImageSets/Segmentation/train.txt",
        "ImageSets/Segmentation/aug.txt",
    ]
    test = cfg.test_dataloader.dataset.pipeline  # T.Resize((448, 448)): no aspect ratio kept
    assert _types(test) == ["LoadImageFromFile", "Resize", "LoadAnnotations", "PackSegInputs"]
    assert tuple(test[1].scale) == (lp["size_crops"],) * 2 and test[1].keep_ratio is False
    optimizer = cfg.optim_wrapper.optimizer
    assert dict(optimizer) == dict(type="SGD", lr=lp["lr"], momentum=lp["momentum"], weight_decay=lp["weight_decay"])
    (step,) = cfg.param_scheduler  # StepLR(step_size=drop_at, gamma=decay_rate), stepped per epoch
    assert step.type == "MultiStepLR" and step.by_epoch is True and step.milestones == [lp["drop_at"]]
    assert step.gamma == lp["decay_rate"] and step.end == lp["max_epochs"]
    assert cfg.train_cfg.type == "EpochBasedTrainLoop" and cfg.train_cfg.max_epochs == lp["max_epochs"]


def test_torchvision_random_resized_crop_is_torchvisions_on_image_and_labels():
    """Same torch seed, same box as torchvision.transforms.RandomResizedCrop; the pixels of
    torchvision.transforms.functional.resized_crop on PIL images (bilinear image, nearest labels)."""
    import torch
    import torchvision.transforms as T
    import torchvision.transforms.functional as F
    from mmengine.registry import init_default_scope
    from mmseg.registry import TRANSFORMS
    from PIL import Image
    from user_data import _photos

    import r2o_mmseg  # noqa: F401

    init_default_scope("mmseg")
    crop = TRANSFORMS.build(dict(type="TorchvisionRandomResizedCrop", size=(48, 48), scale=(0.3, 1.0)))
    reference = T.RandomResizedCrop(48, scale=(0.3, 1.0))
    rgb = _photos()[1][:90, :130]  # chelsea, 90 x 130
    rng = np.random.default_rng(0)
    seg = rng.integers(0, 21, rgb.shape[:2], dtype=np.uint8)
    for seed in range(12):
        torch.manual_seed(seed)
        out = crop({"img": rgb[..., ::-1].copy(), "gt_seg_map": seg.copy(), "seg_fields": ["gt_seg_map"]})
        torch.manual_seed(seed)
        box = reference.get_params(Image.fromarray(rgb), reference.scale, reference.ratio)
        want_img = np.asarray(F.resized_crop(Image.fromarray(rgb), *box, [48, 48], T.InterpolationMode.BILINEAR))
        want_seg = np.asarray(F.resized_crop(Image.fromarray(seg), *box, [48, 48], T.InterpolationMode.NEAREST))
        np.testing.assert_array_equal(out["img"][..., ::-1], want_img)  # mmseg's BGR, the same pixels
        np.testing.assert_array_equal(out["gt_seg_map"], want_seg)
        assert out["img_shape"] == (48, 48)
    with pytest.raises(ValueError, match="scale"):
        TRANSFORMS.build(dict(type="TorchvisionRandomResizedCrop", size=48, scale=(1.0, 0.5)))


def test_ade20k_tree_reads_with_reduce_zero_label(tmp_path):
    """The ADE20K layout of tests/user_data.py through the UperNet config's own dataset and pipeline: 150
    classes, label 0 -> 255 (ignored), k -> k - 1; the files are the single-channel PNGs ADE20K ships."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    from PIL import Image
    from user_data import write_ade20k_tree

    import r2o_mmseg  # noqa: F401

    root = write_ade20k_tree(tmp_path / "ADEChallengeData2016", n_train=2, n_val=1)
    init_default_scope("mmseg")
    cfg = _config("r2o_upernet_ade20k.py")
    dataset_cfg = dict(cfg.val_dataloader.dataset, data_root=str(root))
    dataset = DATASETS.build(dataset_cfg)
    assert len(dataset) == 1 and len(dataset.metainfo["classes"]) == 150
    sample = dataset[0]
    png = root / "annotations/validation/ADE_val_00000001.png"
    raw = np.asarray(Image.open(png))
    assert Image.open(png).mode == "L" and {0, 1, 150} <= set(np.unique(raw).tolist())
    got = sample["data_samples"].gt_sem_seg.data.numpy()[0]
    expected = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
    np.testing.assert_array_equal(got, expected)
    assert got.max() == 255 and set(np.unique(got).tolist()) - {255} <= set(range(150))
