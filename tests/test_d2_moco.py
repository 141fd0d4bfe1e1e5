"""MoCo's detectron2 protocols (R50-C4 with an extra norm after res5; VOC07+12 Faster R-CNN 24k and COCO Mask
R-CNN 2x), resolved by the real ``get_cfg`` + ``add_r2o_config`` against facebookresearch/moco's
``detection/configs`` files, the C4 model and its weights (res5 in the ROI head), detectron2's own PASCAL VOC
loader on a VOC-layout folder of real photos, and two-iteration trainings of both configs (e2e): the VOC one as a
real tools/train_net.py command line (detectron2 registers its builtin VOC names from $DETECTRON2_DATASETS when
it is first imported), the COCO one through the same cli() in this process (tests/helpers/in_process.py)."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import run_main, run_tool
from helpers.in_process import train_net_cli
from user_data import VOC_PHOTO_OBJECTS, write_coco_polygons, write_voc_detection_tree

VOC_CFG = "r2o_d2/configs/faster_rcnn_R50_C4_voc0712_24k.yaml"
COCO_CFG = "r2o_d2/configs/mask_rcnn_R50_C4_coco_2x.yaml"

# facebookresearch/moco detection/configs/Base-RCNN-C4-BN.yaml (no _BASE_: the rest is detectron2's defaults)
MOCO_BASE = {
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 6000,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 1000,
    "MODEL.ROI_HEADS.NAME": "Res5ROIHeadsExtraNorm",
    "MODEL.BACKBONE.FREEZE_AT": 0,
    "MODEL.RESNETS.NORM": "naiveSyncBN",
    "TEST.PRECISE_BN.ENABLED": True,
    "SOLVER.IMS_PER_BATCH": 16,
    "SOLVER.BASE_LR": 0.02,
}
# pascal_voc_R_50_C4_24k_moco.yaml and coco_R_50_C4_2x_moco.yaml (the same four lines)
MOCO_INPUT = {
    "MODEL.PIXEL_MEAN": [123.675, 116.280, 103.530],
    "MODEL.PIXEL_STD": [58.395, 57.120, 57.375],
    "MODEL.RESNETS.STRIDE_IN_1X1": False,
    "INPUT.FORMAT": "RGB",
}
# pascal_voc_R_50_C4_24k.yaml
MOCO_VOC = {
    "MODEL.MASK_ON": False,
    "MODEL.ROI_HEADS.NUM_CLASSES": 20,
    "INPUT.MIN_SIZE_TRAIN": (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800),
    "INPUT.MIN_SIZE_TEST": 800,
    "DATASETS.TRAIN": ("voc_2007_trainval", "voc_2012_trainval"),
    "DATASETS.TEST": ("voc_2007_test",),
    "SOLVER.STEPS": (18000, 22000),
    "SOLVER.MAX_ITER": 24000,
    "SOLVER.WARMUP_ITERS": 100,
}
# coco_R_50_C4_2x.yaml
MOCO_COCO = {
    "MODEL.MASK_ON": True,
    "INPUT.MIN_SIZE_TRAIN": (640, 672, 704, 736, 768, 800),
    "INPUT.MIN_SIZE_TEST": 800,
    "DATASETS.TRAIN": ("coco_2017_train",),
    "DATASETS.TEST": ("coco_2017_val",),
    "SOLVER.STEPS": (120000, 160000),
    "SOLVER.MAX_ITER": 180000,
}
# what ours sets beyond MoCo's files: the R2O backbone builder (detectron2's ResNet, torchvision layout) and
# where weights and outputs go
OURS = {"MODEL.BACKBONE.NAME": "build_r2o_resnet_backbone", "MODEL.WEIGHTS": "", "OUTPUT_DIR": None}


def _flat(node, prefix=""):
    from detectron2.config import CfgNode

    out = {}
    for key, value in node.items():
        if isinstance(value, CfgNode):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = tuple(value) if isinstance(value, list | tuple) else value
    return out


def _cfg(path=None):
    from detectron2.config import get_cfg

    from r2o_d2 import add_r2o_config

    cfg = add_r2o_config(get_cfg())
    if path:
        cfg.merge_from_file(path)
    return cfg


@pytest.mark.parametrize("path,protocol", [(VOC_CFG, MOCO_VOC), (COCO_CFG, MOCO_COCO)])
def test_config_is_mocos_protocol_and_detectron2_defaults_elsewhere(path, protocol):
    """Every value MoCo's files set, and every other value detectron2's default (as MoCo inherits it)."""
    got, default = _flat(_cfg(path)), _flat(_cfg())
    expected = {**default, **{k: tuple(v) if isinstance(v, list | tuple) else v for k, v in MOCO_BASE.items()}}
    expected |= {k: tuple(v) if isinstance(v, list) else v for k, v in {**MOCO_INPUT, **protocol}.items()}
    expected |= {k: v for k, v in OURS.items() if v is not None}
    differ = {k: (got[k], expected[k]) for k in expected if k not in ("OUTPUT_DIR",) and got[k] != expected[k]}
    assert not differ, f"{path}: (ours, MoCo/detectron2 default): {differ}"
    assert set(got) == set(expected)
    # the C4 layout MoCo takes from detectron2's defaults
    assert got["MODEL.RESNETS.OUT_FEATURES"] == ("res4",) and got["MODEL.RPN.IN_FEATURES"] == ("res4",)
    assert got["MODEL.ROI_HEADS.IN_FEATURES"] == ("res4",) and got["SOLVER.REFERENCE_WORLD_SIZE"] == 0


def _c4_model(depth=50):
    from r2o_d2 import R2OTrainer, adapt_norm_to_world_size

    cfg = _cfg(VOC_CFG)
    cfg.MODEL.RESNETS.DEPTH = depth
    assert adapt_norm_to_world_size(cfg, 1) == ["MODEL.RESNETS.NORM"]  # naiveSyncBN → BN with one process
    cfg.MODEL.DEVICE = "cpu"
    return R2OTrainer.build_model(cfg)


@pytest.fixture(scope="module")
def torchvision_r50(tmp_path_factory):
    """A torchvision ResNet-50 state dict (random weights: the layout of IMAGENET1K_V1, with its fc)."""
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tv") / "resnet50_torchvision.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    return path


def _trunk_count(state):
    return sum(not k.startswith("fc.") and not k.endswith("num_batches_tracked") for k in state)


def test_c4_model_has_res5_and_an_extra_norm_in_the_roi_head_and_loads_layer4_there(torchvision_r50, tmp_path):
    from r2o_d2 import R2OCheckpointer, Res5ROIHeadsExtraNorm

    model = _c4_model()
    assert isinstance(model.roi_heads, Res5ROIHeadsExtraNorm)
    assert model.backbone.output_shape().keys() == {"res4"} and not hasattr(model.backbone, "res5")
    assert list(model.roi_heads.res5._modules) == ["0", "1", "2", "norm"]
    norm = model.roi_heads.res5.norm
    assert isinstance(norm, torch.nn.BatchNorm2d) and norm.num_features == 2048
    assert model.roi_heads.res5[0].conv2.stride == (2, 2)  # torchvision layout: stride in the 3x3
    x = torch.randn(3, 1024, 14, 14)
    model.roi_heads.res5.eval()
    torch.testing.assert_close(
        model.roi_heads.res5(x), norm(model.roi_heads.res5[2](model.roi_heads.res5[1](model.roi_heads.res5[0](x))))
    )

    tv = torch.load(torchvision_r50, weights_only=True)
    pkl = tmp_path / "r50_d2.pkl"
    r = run_main("tools/convert.py", str(torchvision_r50), str(pkl), "--to", "d2")  # the supervised-baseline path
    assert r.returncode == 0, r.stderr
    for path in (torchvision_r50, pkl):
        with torch.no_grad():
            model.roi_heads.res5[2].conv3.weight.zero_()
            model.backbone.res4[5].conv1.weight.zero_()
        ckpt = R2OCheckpointer(model)
        ckpt.load(str(path))
        report = ckpt.last_report
        assert report.complete and len(report.loaded) == _trunk_count(tv) == 265, report
        assert sum(k.startswith("layer4.") for k in report.loaded) == 50  # res5: 3 blocks + shortcut, counted
        torch.testing.assert_close(model.roi_heads.res5[2].conv3.weight, tv["layer4.2.conv3.weight"])
        torch.testing.assert_close(
            model.roi_heads.res5[0].shortcut.norm.running_var, tv["layer4.0.downsample.1.running_var"]
        )
        torch.testing.assert_close(model.backbone.res4[5].conv1.weight, tv["layer3.5.conv1.weight"])
        torch.testing.assert_close(model.roi_heads.res5.norm.weight, torch.ones(2048))  # not a ResNet tensor: untouched


def test_c4_head_refuses_a_basic_block_resnet_with_what_to_do():
    from r2o_d2 import R2OConfigError

    with pytest.raises(R2OConfigError, match="MODEL.RESNETS.DEPTH is 18.*FPN config"):
        _c4_model(depth=18)


def test_detectron2_loads_a_voc_folder_of_real_photos_with_1_based_boxes(tmp_path):
    from detectron2.data.datasets.pascal_voc import CLASS_NAMES, load_voc_instances
    from detectron2.structures import BoxMode

    voc = tmp_path / "VOC2007"
    written = write_voc_detection_tree(voc, {"trainval": 5, "test": 1})
    records = load_voc_instances(str(voc), "trainval", CLASS_NAMES)  # np.str in detectron2 0.6: patched
    assert [r["image_id"] for r in records] == list(written)[:5]
    for r in records:
        boxes = written[r["image_id"]]
        assert [CLASS_NAMES[a["category_id"]] for a in r["annotations"]] == [c for c, _, _ in boxes]
        for a, (_, (x0, y0, x1, y1), _) in zip(r["annotations"], boxes):
            assert a["bbox_mode"] == BoxMode.XYXY_ABS and a["bbox"] == [x0 - 1.0, y0 - 1.0, float(x1), float(y1)]
        assert (
            0 <= min(a["bbox"][0] for a in r["annotations"])
            and max(a["bbox"][2] for a in r["annotations"]) <= r["width"]
        )
    assert {c for c, *_ in sum(VOC_PHOTO_OBJECTS.values(), [])} <= set(CLASS_NAMES)
    assert len(load_voc_instances(str(voc), "test", CLASS_NAMES)) == 1  # a split of one image (ndmin=1 patch)


def test_own_voc_folder_registers_with_detectron2_metadata_and_names_broken_files(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from r2o_d2 import R2OConfigError, register_voc_dataset

    voc = tmp_path / "mine"
    write_voc_detection_tree(voc, {"trainval": 4})
    register_voc_dataset("i32_voc", str(voc), "trainval", "2007")
    meta = MetadataCatalog.get("i32_voc")
    assert (meta.dirname, meta.split, meta.year, meta.evaluator_type) == (str(voc), "trainval", 2007, "pascal_voc")
    assert len(meta.thing_classes) == 20 and len(DatasetCatalog.get("i32_voc")) == 4

    xml = voc / "Annotations/2007_000002.xml"
    xml.write_text(xml.read_text().replace("<name>motorbike</name>", "<name>moped</name>"))
    with pytest.raises(FileNotFoundError, match=r"2007_000002\.xml: object 'moped' is not one of the 20 VOC"):
        DatasetCatalog.get("i32_voc")
    xml.write_text(xml.read_text().replace("<name>moped</name>", "<name>motorbike</name>"))
    (voc / "JPEGImages/2007_000003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 4 images .*2007_000003\.jpg"):
        DatasetCatalog.get("i32_voc")
    with pytest.raises(FileNotFoundError, match=r"ImageSets/Main/val\.txt does not exist"):
        register_voc_dataset("i32_voc", str(voc), "val", 2012)
        DatasetCatalog.get("i32_voc")
    with pytest.raises(R2OConfigError, match="year 2010"):
        register_voc_dataset("i32_voc", str(voc), "trainval", 2010)
    with pytest.raises(R2OConfigError, match="year VOC2007 is not one of"):
        register_voc_dataset("i32_voc", str(voc), "trainval", "VOC2007")
    register_voc_dataset("i32_voc", str(voc), "trainval", 2007)
    xml.write_text(xml.read_text().replace("</annotation>", ""))
    with pytest.raises(FileNotFoundError, match=r"2007_000002\.xml is not valid XML"):
        DatasetCatalog.get("i32_voc")


# A CPU-sized run: small images, few proposals and regions per image, 8x8 pooled regions (res5 runs once per
# region: it is most of the cost), two iterations and one precise-BN batch; the protocol's model, ROI head,
# extra norm, weights loading and evaluator are the config's own.
TINY = [
    "MODEL.DEVICE", "cpu",
    "INPUT.MIN_SIZE_TRAIN", "(64, 80, 96)",
    "INPUT.MAX_SIZE_TRAIN", "160",
    "INPUT.MIN_SIZE_TEST", "96",
    "INPUT.MAX_SIZE_TEST", "160",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "256",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "16",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "8",
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", "8",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.BASE_LR", "0.002",
    "SOLVER.MAX_ITER", "2",
    "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.STEPS", "(100,)",
    "TEST.PRECISE_BN.NUM_ITER", "1",
    "DATALOADER.NUM_WORKERS", "0",
]  # fmt: skip


def _copypaste_rows(log: str, task: str) -> list[float]:
    """The numbers of detectron2's ``copypaste:`` lines for ``task`` (nan allowed)."""
    m = re.search(rf"copypaste: Task: {task}\n.*copypaste: ([\w,]+)\n.*copypaste: ([-\d.,na]+)\n", log)
    assert m, log[-3000:]
    return [float(v) for v in m.group(2).split(",")]


@pytest.mark.e2e  # a real detectron2 training
def test_voc_c4_config_trains_on_detectron2_builtin_voc_names_and_reports_voc_ap(torchvision_r50, tmp_path):
    root = tmp_path / "datasets"
    write_voc_detection_tree(root / "VOC2007", {"trainval": 4, "test": 2}, seed=0, year=2007)
    write_voc_detection_tree(root / "VOC2012", {"trainval": 4}, seed=1, year=2012)
    out = tmp_path / "out"
    r = run_tool(
        "tools/train_net.py", "--config-file", VOC_CFG, *TINY, "OUTPUT_DIR", str(out), "MODEL.WEIGHTS",
        str(torchvision_r50), env={"DETECTRON2_DATASETS": str(root)}, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    log = (out / "log.txt").read_text()
    assert "world size 1: SyncBN → BN for MODEL.RESNETS.NORM" in log
    assert "loaded 265/265 backbone tensors" in log and "every backbone tensor was loaded" in log
    assert "voc_2007_trainval" in log and "voc_2012_trainval" in log
    assert "Evaluating voc_2007_test using 2007 metric" in log  # detectron2's PascalVOCDetectionEvaluator
    ap, ap50, ap75 = _copypaste_rows(log, "bbox")
    assert all(v != v or 0.0 <= v <= 100.0 for v in (ap, ap50, ap75)), (ap, ap50, ap75)
    assert (out / "model_final.pth").is_file()


@pytest.mark.e2e  # a real detectron2 training
def test_coco_c4_config_trains_on_coco_polygons_with_masks(tmp_path):
    data = tmp_path / "coco"
    train_json, images = write_coco_polygons(data, "train", n_images=6, seed=0)
    val_json, _ = write_coco_polygons(data, "val", n_images=2, seed=1)
    out = tmp_path / "out"
    r = train_net_cli(
        "--config-file", COCO_CFG, "--coco-dataset", "poly_train", str(train_json), str(images),
        "--coco-dataset", "poly_val", str(val_json), str(images), *TINY, "DATASETS.TRAIN", '("poly_train",)',
        "DATASETS.TEST", '("poly_val",)', "OUTPUT_DIR", str(out),
    )  # fmt: skip
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    log = (out / "log.txt").read_text()
    assert "MODEL.ROI_HEADS.NUM_CLASSES 4: the classes of dataset 'poly_train'" in log
    assert "Res5ROIHeadsExtraNorm" in log and "mask_head" in log
    assert "Evaluation results for bbox" in log and "Evaluation results for segm" in log
    for task in ("bbox", "segm"):
        assert len(_copypaste_rows(log, task)) == 6  # AP, AP50, AP75, APs, APm, APl


def test_voc_dataset_option_is_read_before_any_process_starts(tmp_path, capsys):
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("_tool_train_net", ROOT / "tools/train_net.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    voc = tmp_path / "VOCmine"
    write_voc_detection_tree(voc, {"trainval": 3, "test": 2})
    (voc / "Annotations/2007_000004.xml").unlink()  # listed in test.txt
    argv = ["--config-file", VOC_CFG, "DATASETS.TRAIN", '("m_tv",)', "DATASETS.TEST", '("m_test",)']
    argv += ["--voc-dataset", "m_tv", str(voc), "trainval", "2007", "--voc-dataset", "m_test", str(voc), "test", "2007"]
    args = tool.parse_args(argv)
    assert args.voc_dataset == [["m_tv", str(voc), "trainval", "2007"], ["m_test", str(voc), "test", "2007"]]
    assert tool.cli(argv) == 2
    err = capsys.readouterr().err
    assert "dataset 'm_test'" in err and "2007_000004.xml (listed in" in err and "Traceback" not in err
