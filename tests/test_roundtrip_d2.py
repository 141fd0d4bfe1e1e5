"""A user's round trip with detectron2: the *protocol* config (LSJ mapper, SyncBN, reference world size 16)
on a COCO json with polygon segmentations and its own classes, from an official-format R2O checkpoint:
train → --resume → --eval-only, and the checks that stop a run before training instead of after it. The first
training is a real tools/train_net.py command line; --resume and --eval-only call the same cli() in this process
(tests/helpers/in_process.py) on its output folder."""

import importlib.util
import json
import re

import numpy as np
import pytest
import torch
import torchvision
from conftest import ROOT, run_tool
from helpers.in_process import train_net_cli
from test_weights import official_checkpoint
from user_data import CATEGORIES, write_coco_polygons

PROTOCOL_CFG = "r2o_d2/configs/mask_rcnn_R50_FPN.yaml"

# the protocol's mapper, norms and solver; only depth, widths, sizes and lengths shrink for a CPU test
SMALL = {
    "MODEL.DEVICE": "cpu",
    "MODEL.RESNETS.DEPTH": "18",
    "MODEL.FPN.OUT_CHANNELS": "64",
    "MODEL.ROI_BOX_HEAD.CONV_DIM": "64",
    "MODEL.ROI_BOX_HEAD.FC_DIM": "128",
    "MODEL.ROI_MASK_HEAD.CONV_DIM": "64",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": "64",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": "0.0",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": "100",
    "MODEL.RPN.POST_NMS_TOPK_TEST": "50",
    "INPUT.LSJ.IMAGE_SIZE": "96",
    "SOLVER.IMS_PER_BATCH": "2",
    "SOLVER.REFERENCE_WORLD_SIZE": "0",
    "SOLVER.WARMUP_ITERS": "1",
    "SOLVER.STEPS": "(100,)",
    "SOLVER.BASE_LR": "0.01",
    "TEST.PRECISE_BN.ENABLED": "False",
    "TEST.DETECTIONS_PER_IMAGE": "20",
    "DATALOADER.NUM_WORKERS": "0",
    "DATALOADER.FILTER_EMPTY_ANNOTATIONS": "False",  # train on the image without annotations too
}


def overrides(**values: str) -> list[str]:
    merged = {**SMALL, **{k.replace("__", "."): v for k, v in values.items()}}
    return [x for kv in merged.items() for x in kv]


@pytest.fixture(scope="module")
def user_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_coco")
    train_json, images = write_coco_polygons(root, "train", n_images=8, seed=0)
    val_json, _ = write_coco_polygons(root, "val", n_images=3, seed=1, minimal=True)
    return {"train": train_json, "val": val_json, "images": images, "root": root}


def coco_args(user_coco, val_json=None) -> list[str]:
    return [
        "--coco-dataset",
        "mine_train",
        str(user_coco["train"]),
        str(user_coco["images"]),
        "--coco-dataset",
        "mine_val",
        str(val_json or user_coco["val"]),
        str(user_coco["images"]),
    ]


def test_lsj_mapper_crops_polygons(user_coco):
    """The protocol mapper on polygons: fvcore's crop (shapely) clips them to the crop, boxes follow the masks."""
    from detectron2.config import get_cfg
    from detectron2.structures import PolygonMasks

    from r2o_d2 import add_r2o_config, build_mapper, register_coco_dataset
    from r2o_d2.datasets import load_checked_coco_json

    cfg = add_r2o_config(get_cfg())
    cfg.merge_from_file(str(ROOT / PROTOCOL_CFG))
    cfg.INPUT.LSJ.IMAGE_SIZE = 48  # smaller than the images: the crop cuts objects
    register_coco_dataset("mine_mapper", str(user_coco["train"]), str(user_coco["images"]))
    records = load_checked_coco_json(str(user_coco["train"]), str(user_coco["images"]), "mine_mapper")
    assert isinstance(records[0]["annotations"][0]["segmentation"], list)  # polygons, not RLE
    mapper = build_mapper(cfg, True)
    state = np.random.get_state()
    np.random.seed(0)
    n_instances = 0
    for record in records * 3:
        out = mapper(record)
        assert tuple(out["image"].shape) == (3, 48, 48)  # grayscale JPEGs come out as 3 channels too
        inst = out["instances"]
        if not record["annotations"]:  # kept with DATALOADER.FILTER_EMPTY_ANNOTATIONS False
            assert len(inst) == 0
            continue
        assert isinstance(inst.gt_masks, PolygonMasks)
        for polygons, box in zip(inst.gt_masks.polygons, inst.gt_boxes.tensor):
            points = np.concatenate([p.reshape(-1, 2) for p in polygons])
            assert points.min() >= -1e-3 and points.max() <= 48 + 1e-3  # clipped to the crop
            np.testing.assert_allclose(box.numpy(), [*points.min(0), *points.max(0)], atol=1e-3)
        n_instances += len(inst)
    np.random.set_state(state)
    assert n_instances > 0


def test_protocol_config_round_trip_on_polygons_from_official_checkpoint(user_coco, tmp_path, capsys):
    official = tmp_path / "r2o_official_r18.pth"
    torch.save(official_checkpoint(torchvision.models.resnet18()), official)
    out = tmp_path / "out"
    common = [*coco_args(user_coco), "DATASETS.TRAIN", '("mine_train",)', "DATASETS.TEST", '("mine_val",)']

    r = run_tool(
        "tools/train_net.py",
        "--config-file",
        PROTOCOL_CFG,
        *common,
        *overrides(
            MODEL__WEIGHTS=str(official), SOLVER__MAX_ITER="2", SOLVER__CHECKPOINT_PERIOD="2", OUTPUT_DIR=str(out)
        ),
    )
    text = r.stdout + r.stderr
    assert r.returncode == 0, text[-4000:]
    log = (out / "log.txt").read_text()
    # the config says 80 classes; the json has 4 (one of them without instances)
    assert f"MODEL.ROI_HEADS.NUM_CLASSES {len(CATEGORIES)}: the classes of dataset 'mine_train'" in log
    assert "r2o-official (online encoder)" in log and "every backbone tensor was loaded" in log
    assert "Evaluation results for segm" in log
    model = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    assert model["roi_heads.box_predictor.cls_score.weight"].shape[0] == len(CATEGORIES) + 1

    r = train_net_cli(
        "--config-file",
        PROTOCOL_CFG,
        "--resume",
        *common,
        *overrides(SOLVER__MAX_ITER="4", OUTPUT_DIR=str(out)),
        "DATASETS.TEST",
        "()",  # no evaluation after the resumed iterations: --eval-only evaluates next
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "Starting training from iteration 2" in (out / "log.txt").read_text()

    r = train_net_cli(
        "--config-file",
        PROTOCOL_CFG,
        "--eval-only",
        *common,
        *overrides(MODEL__WEIGHTS=str(out / "model_final.pth"), OUTPUT_DIR=str(tmp_path / "eval")),
    )
    text = r.stdout + r.stderr + (tmp_path / "eval/log.txt").read_text()  # detectron2 logs to its log.txt too
    assert r.returncode == 0, text[-4000:]
    assert "copypaste: Task: segm" in text
    assert re.search(r"copypaste: [\d.na]+,", text)

    # the trained 4-class model on a 3-class test set: refused, not evaluated with random heads
    three = tmp_path / "val_3_classes.json"
    data = json.loads(user_coco["val"].read_text())
    three.write_text(json.dumps({**data, "categories": data["categories"][:3]}))
    code, err = run_cli(
        capsys,
        "--eval-only",
        *coco_args(user_coco, val_json=three),
        "DATASETS.TEST",
        '("mine_val",)',
        *overrides(MODEL__WEIGHTS=str(out / "model_final.pth"), OUTPUT_DIR=str(tmp_path / "eval3")),
    )
    assert code == 2 and "does not fit the model's heads" in err and "roi_heads.box_predictor" in err


def _train_net_module():
    spec = importlib.util.spec_from_file_location("train_net_under_test", ROOT / "tools/train_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = _train_net_module().cli(["--config-file", str(ROOT / PROTOCOL_CFG), *argv])
    return code, capsys.readouterr().err


def test_classes_given_on_the_command_line_must_match_the_data(user_coco, tmp_path, capsys):
    code, err = run_cli(
        capsys,
        *coco_args(user_coco),
        *overrides(MODEL__ROI_HEADS__NUM_CLASSES="80", SOLVER__MAX_ITER="1", OUTPUT_DIR=str(tmp_path)),
        "DATASETS.TRAIN",
        '("mine_train",)',
        "DATASETS.TEST",
        '("mine_val",)',
    )
    assert code == 2
    assert "MODEL.ROI_HEADS.NUM_CLASSES 80 was given on the command line" in err and "has 4 classes" in err
    assert not (tmp_path / "log.txt").exists()  # refused before training started


def test_test_set_with_other_classes_stops_before_training(user_coco, tmp_path, capsys):
    data = json.loads(user_coco["val"].read_text())
    data["categories"] = data["categories"][:3]  # a val export that dropped the empty category
    other = tmp_path / "val_3_classes.json"
    other.write_text(json.dumps(data))
    code, err = run_cli(
        capsys,
        *coco_args(user_coco, val_json=other),
        *overrides(SOLVER__MAX_ITER="1", OUTPUT_DIR=str(tmp_path)),
        "DATASETS.TRAIN",
        '("mine_train",)',
        "DATASETS.TEST",
        '("mine_val",)',
    )
    assert code == 2
    assert "'mine_train' (4 classes) and 'mine_val' (3 classes)" in err
    assert not (tmp_path / "log.txt").exists()


def test_small_batch_with_the_protocol_reference_world_size_says_what_to_set(user_coco, tmp_path, capsys):
    argv = [*coco_args(user_coco), "DATASETS.TRAIN", '("mine_train",)', "DATASETS.TEST", "()"]
    code, err = run_cli(
        capsys, *argv, *overrides(SOLVER__REFERENCE_WORLD_SIZE="16", SOLVER__MAX_ITER="1", OUTPUT_DIR=str(tmp_path))
    )
    assert code == 2
    assert "SOLVER.IMS_PER_BATCH 2" in err and "SOLVER.REFERENCE_WORLD_SIZE 16" in err
    assert "SOLVER.REFERENCE_WORLD_SIZE 0" in err
    assert not (tmp_path / "log.txt").exists()


def test_rle_instances_with_polygon_mask_format_say_bitmask(user_coco, tmp_path, capsys):
    from pycocotools import mask as mask_util

    data = json.loads(user_coco["train"].read_text())
    first = data["annotations"][0]
    image = next(i for i in data["images"] if i["id"] == first["image_id"])
    rle = mask_util.frPyObjects(first["segmentation"], image["height"], image["width"])
    merged = mask_util.merge(rle)
    first["segmentation"] = {"size": merged["size"], "counts": merged["counts"].decode()}  # a mask-tool export
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps(data))
    argv = ["--coco-dataset", "mixed", str(mixed), str(user_coco["images"]), "DATASETS.TRAIN", '("mixed",)']
    code, err = run_cli(capsys, *argv, "DATASETS.TEST", "()", *overrides(OUTPUT_DIR=str(tmp_path)))
    assert code == 2 and "1 instances store their mask as RLE" in err and "INPUT.MASK_FORMAT bitmask" in err
