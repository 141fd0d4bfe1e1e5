"""detectron2 plugin: the demo config trains and evaluates through tools/train_net.py from an R2O
checkpoint, the LSJ mapper's sizes, the SyncBN → BN switch and dataset errors — all with the real
detectron2. Resume and --eval-only: the protocol round trip in test_roundtrip_d2.py."""

import json
import re

import numpy as np
from conftest import run_main, run_tool
from helpers.in_process import train_net_cli

D2_CFG = "r2o_d2/configs/mask_rcnn_R18_FPN_demo.yaml"


def coco_with_background_class(demo_dir, tmp_path, split):
    """The demo json plus an annotation-less category id 0 '_background_' (as some tools write)."""
    data = json.loads((demo_dir / f"instances_{split}.json").read_text())
    data["categories"] = [{"id": 0, "name": "_background_", "supercategory": ""}, *data["categories"]]
    path = tmp_path / f"with_bg_{split}.json"
    path.write_text(json.dumps(data))
    return path


def train_net(*args, demo_dir, timeout=900):
    return run_tool(
        "tools/train_net.py", "--config-file", D2_CFG, *args, env={"R2O_DEMO_DIR": str(demo_dir)}, timeout=timeout
    )


SMALL = [
    "INPUT.LSJ.IMAGE_SIZE",
    "96",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.WARMUP_ITERS",
    "1",
    "SOLVER.STEPS",
    "(100,)",
]


def test_demo_config_trains_and_evaluates_from_r2o_checkpoint(r2o_checkpoint, demo_dir, tmp_path):
    out = tmp_path / "d2"
    train_json = coco_with_background_class(demo_dir, tmp_path, "train")
    val_json = coco_with_background_class(demo_dir, tmp_path, "val")
    datasets = [
        "--coco-dataset",
        "bg_train",
        str(train_json),
        str(demo_dir / "images"),
        "--coco-dataset",
        "bg_val",
        str(val_json),
        str(demo_dir / "images_val"),
    ]
    common = [
        *datasets,
        *SMALL,
        "OUTPUT_DIR",
        str(out),
        "DATASETS.TRAIN",
        '("bg_train",)',
        "DATASETS.TEST",
        '("bg_val",)',
        "MODEL.ROI_HEADS.NUM_CLASSES",
        "5",
    ]
    r = train_net(
        *common,
        "MODEL.WEIGHTS",
        str(r2o_checkpoint),
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        demo_dir=demo_dir,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    log = (out / "log.txt").read_text()
    assert "SyncBN → BN" in log
    assert "loaded 100/100 backbone tensors" in log and "every backbone tensor was loaded" in log
    assert "r2o-pretrain (online encoder" in log
    assert "Evaluation results for bbox" in log and "Evaluation results for segm" in log
    aps = re.findall(r"\|\s*AP\s*\|\s*AP50.*\n.*\n\|\s*([\d.na]+)\s*\|", log)
    assert len(aps) >= 2, log[-3000:]  # a numeric (or nan) AP row for bbox and for segm
    assert (out / "model_final.pth").is_file()


def test_missing_images_give_a_clear_error(demo_dir, tmp_path):
    data = json.loads((demo_dir / "instances_train.json").read_text())
    data["images"][3]["file_name"] = "gone.jpg"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    # in process (an error path, before any training); the tool's option after the overrides is still read
    # as the option (split_trailing_options)
    r = train_net_cli(
        "--config-file",
        D2_CFG,
        *SMALL,
        "DATASETS.TRAIN",
        '("broken",)',
        "OUTPUT_DIR",
        str(tmp_path / "o"),
        "SOLVER.MAX_ITER",
        "1",
        "--coco-dataset",
        "broken",
        str(path),
        str(demo_dir / "images"),
        env={"R2O_DEMO_DIR": str(demo_dir)},
    )
    assert r.returncode == 2
    assert "gone.jpg" in r.stderr and "1 of 24 images" in r.stderr


def test_wrong_weights_are_refused_with_the_file_named(demo_dir, tmp_path):
    bad = tmp_path / "bad.pth"
    import torch

    torch.save({"conv1.weight": torch.zeros(3)}, bad)
    r = train_net_cli(  # in process: the refusal comes before the first iteration
        "--config-file", D2_CFG, *SMALL, "OUTPUT_DIR", str(tmp_path / "o"), "MODEL.WEIGHTS", str(bad),
        "SOLVER.MAX_ITER", "1", env={"R2O_DEMO_DIR": str(demo_dir)},
    )  # fmt: skip
    assert r.returncode == 2 and str(bad) in r.stderr


def _train_net_module():
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("_tool_train_net", ROOT / "tools/train_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_options_after_the_overrides_are_options_and_a_stray_word_is_named(capsys):
    tool = _train_net_module()
    args = tool.parse_args(
        ["--config-file", D2_CFG, "MODEL.WEIGHTS", "w.pth", "--resume", "--num-gpus=2", "--coco-dataset", "a", "b", "c"]
        + ["SOLVER.MAX_ITER", "5", "--eval-only"]
    )
    assert (args.resume, args.eval_only, args.num_gpus) == (True, True, 2)
    assert args.coco_dataset == [["a", "b", "c"]]
    assert args.opts == ["MODEL.WEIGHTS", "w.pth", "SOLVER.MAX_ITER", "5"]
    assert tool.cli(["--config-file", D2_CFG, "MODEL.WEIGHTS", "w.pth", "--resum"]) == 2
    err = capsys.readouterr().err
    assert "odd number of words: MODEL.WEIGHTS w.pth --resum" in err and "Traceback" not in err


def _cfg(**lsj):
    from detectron2.config import get_cfg

    from r2o_d2 import add_r2o_config

    cfg = get_cfg()
    add_r2o_config(cfg)
    cfg.merge_from_file(D2_CFG)
    for k, v in lsj.items():
        cfg.INPUT.LSJ[k] = v
    return cfg


def test_lsj_mapper_sizes_follow_the_rule():
    from detectron2.data import transforms as T

    from r2o_d2.mapper import lsj_augmentations

    cfg = _cfg(IMAGE_SIZE=256)
    rng_state = np.random.get_state()
    np.random.seed(0)
    img = np.zeros((100, 200, 3), dtype=np.uint8)  # longest side 200
    scales = []
    for _ in range(30):
        aug_input = T.AugInput(img.copy())
        transforms = T.AugmentationList(lsj_augmentations(cfg, True))(aug_input)
        assert aug_input.image.shape[:2] == (256, 256)  # always cropped/padded to IMAGE_SIZE²
        resize = next(t for t in transforms if isinstance(t, T.ResizeTransform))
        scales.append(max(resize.new_h, resize.new_w) / 256)
    np.random.set_state(rng_state)
    assert 0.8 - 1e-2 <= min(scales) and max(scales) <= 1.25 + 1e-2 and max(scales) - min(scales) > 0.1
    aug_input = T.AugInput(img.copy())
    T.AugmentationList(lsj_augmentations(cfg, False))(aug_input)
    assert aug_input.image.shape[:2] == (128, 256)  # test: longest side = IMAGE_SIZE, no crop


def test_lsj_mapper_output(demo_dir):
    from r2o_d2.datasets import load_checked_coco_json
    from r2o_d2.mapper import build_mapper

    cfg = _cfg(IMAGE_SIZE=128)
    records = load_checked_coco_json(str(demo_dir / "instances_train.json"), str(demo_dir / "images"), "x")
    out = build_mapper(cfg, True)(records[0])
    assert tuple(out["image"].shape) == (3, 128, 128)
    inst = out["instances"]
    assert inst.gt_masks.tensor.shape[-2:] == (128, 128) and len(inst) == len(inst.gt_boxes)


def test_syncbn_becomes_bn_for_one_process():
    from r2o_d2 import adapt_norm_to_world_size

    cfg = _cfg()
    assert cfg.MODEL.RESNETS.NORM == "SyncBN"
    assert adapt_norm_to_world_size(cfg.clone(), 4) == []
    changed = adapt_norm_to_world_size(cfg, 1)
    assert "MODEL.RESNETS.NORM" in changed and cfg.MODEL.RESNETS.NORM == "BN" and cfg.MODEL.FPN.NORM == "BN"


def test_backbone_builds_for_every_depth():
    import torch
    from detectron2.layers import ShapeSpec

    from r2o_d2 import build_r2o_resnet_fpn_backbone

    for depth in (18, 34, 50):
        cfg = _cfg()
        cfg.MODEL.RESNETS.DEPTH = depth
        cfg.MODEL.RESNETS.NORM = "BN"
        cfg.MODEL.FPN.NORM = "BN"
        net = build_r2o_resnet_fpn_backbone(cfg, ShapeSpec(channels=3)).eval()
        out = net(torch.zeros(1, 3, 64, 64))
        assert set(out) == {"p2", "p3", "p4", "p5", "p6"}
        assert net.bottom_up.res2[0].conv1.stride == (1, 1)
        if depth >= 50:
            assert net.bottom_up.res3[0].conv2.stride == (2, 2)  # stride in the 3x3: torchvision layout


def test_checkpointer_reads_export_and_converted_pkl(r2o_checkpoint, tmp_path):
    import torch

    from r2o_d2 import R2OCheckpointer, R2OTrainer, adapt_norm_to_world_size

    cfg = _cfg()
    adapt_norm_to_world_size(cfg, 1)
    model = R2OTrainer.build_model(cfg)
    export = r2o_checkpoint.parent.parent / "export/backbone_torchvision.pth"
    pkl = tmp_path / "r18.pkl"
    r = run_main("tools/convert.py", str(r2o_checkpoint), str(pkl), "--to", "d2")  # its command line: test_weights
    assert r.returncode == 0, r.stderr
    expected = torch.load(export, weights_only=True)["layer3.1.conv2.weight"]
    for path in (export, pkl):
        with torch.no_grad():
            model.backbone.bottom_up.res4[1].conv2.weight.zero_()
        ckpt = R2OCheckpointer(model)
        ckpt.load(str(path))
        assert ckpt.last_report.complete and len(ckpt.last_report.loaded) == 100
        torch.testing.assert_close(model.backbone.bottom_up.res4[1].conv2.weight, expected)
