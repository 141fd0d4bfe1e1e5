"""Loading a weights file never runs code from it — through every entry point, detectron2 ``.pkl`` included —
while real weight pickles (detectron2 model-zoo layout, our converter's output) and detectron2's own
training checkpoints still load."""

from __future__ import annotations

import importlib.util
import logging
import os
import pathlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import ROOT, run_main, tiny_overrides
from helpers.in_process import train_net_cli
from test_weights import random_resnet, torchvision_stages
from torch import nn

from r2o_pretrain.weights import ConversionError, read_weights_file
from r2o_pretrain.weights.pickle_reader import UnsafePickleError, read_weights_pickle

D2_CFG = "r2o_d2/configs/mask_rcnn_R18_FPN_demo.yaml"


class ShellPayload:
    """Unpickled, runs ``touch MARKER`` in a shell."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class PathPayload:
    """Unpickled, creates MARKER through ``pathlib.Path.touch``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def malicious_files(folder: Path, marker: Path) -> tuple[Path, Path]:
    """A detectron2-looking ``.pkl`` and a torch ``.pth``: real arrays/tensors first, then a payload."""
    folder.mkdir(parents=True, exist_ok=True)
    pkl = folder / "evil.pkl"
    with open(pkl, "wb") as f:
        model = {"stem.conv1.weight": np.zeros((64, 3, 7, 7), np.float32), "res2.0.x": ShellPayload(marker)}
        pickle.dump({"model": model, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True}, f)
    pth = folder / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(64, 3, 7, 7)}, "meta": PathPayload(marker)}, pth)
    return pkl, pth


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path, Path]:
    marker = tmp_path / "MARKER"
    pkl, pth = malicious_files(tmp_path / "evil", marker)
    return pkl, pth, marker


def tool(name: str):
    """tools/NAME.py as a module, to call its ``main``/``cli`` in this process (its return value is the exit code)."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_payloads_are_real(tmp_path):
    """Guard for every test below: plain unpickling of these files does create the marker."""
    for i, opener in enumerate(
        [lambda p: pickle.load(open(p, "rb")), lambda p: torch.load(p, weights_only=False)]  # noqa: SIM115
    ):
        marker = tmp_path / f"marker{i}"
        files = malicious_files(tmp_path / f"f{i}", marker)
        opener(files[i])
        assert marker.exists()


# ---------------------------------------------------------------- the restricted reader


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_restricted_reader_reads_weight_pickles_of_every_protocol(protocol, tmp_path):
    from collections import OrderedDict

    data = {
        "model": OrderedDict(
            w=np.arange(24, dtype=np.float32).reshape(2, 3, 4),
            i=np.arange(3, dtype=np.int64),
            h=np.ones((2,), np.float16),
            n=np.int64(7),
        ),
        "__author__": "torchvision",
        "matching_heuristics": True,
        "raw": b"\x00\xff",
    }
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    out = read_weights_pickle(path)
    assert out.keys() == data.keys() and out["raw"] == data["raw"] and out["__author__"] == "torchvision"
    for k, v in data["model"].items():
        np.testing.assert_array_equal(out["model"][k], v)
        assert out["model"][k].dtype == v.dtype


def test_restricted_reader_refuses_before_anything_runs(evil):
    pkl, pth, marker = evil
    with pytest.raises(UnsafePickleError) as err:
        read_weights_pickle(pkl)
    assert str(pkl) in str(err.value) and "posix.system" in str(err.value)
    for path in (pkl, pth):
        with pytest.raises(ConversionError) as err:
            read_weights_file(path)
        assert str(path) in str(err.value) and "--allow-pickle" in str(err.value)
    assert not marker.exists()


def test_allow_pickle_stays_the_explicit_opt_in(evil):
    pkl, _, marker = evil
    read_weights_file(pkl, allow_pickle=True)
    assert marker.exists()


# ---------------------------------------------------------------- every entry point refuses


def test_convert_eval_and_pretrain_resume_refuse_malicious_files(evil, demo_dir, tmp_path):
    pkl, pth, marker = evil
    convert, eval_unsup_seg, pretrain = tool("convert"), tool("eval_unsup_seg"), tool("pretrain")
    for path in (pkl, pth):
        out = tmp_path / f"out_{path.suffix[1:]}.pth"
        assert convert.main([str(path), str(out), "--to", "torchvision"]) == 2
        assert not out.exists()
        args = ["--checkpoint", str(path), "--images", str(tmp_path), "--masks", str(tmp_path)]
        assert eval_unsup_seg.main(args) == 2
        run = tmp_path / f"run_{path.suffix[1:]}"
        assert pretrain.main(["--resume", str(path), *tiny_overrides(demo_dir / "images", run)]) == 2
    assert not marker.exists()
    # what the command line prints (its main(), in process: convert.py's real command line runs in test_weights.py)
    r = run_main("tools/convert.py", str(pkl), str(tmp_path / "o.pkl"), "--to", "d2")
    assert r.returncode == 2 and str(pkl) in r.stderr and "'posix.system'" in r.stderr
    assert not (tmp_path / "o.pkl").exists()
    assert not marker.exists()


def test_mmseg_backbone_refuses_malicious_files(evil):
    from mmseg.registry import MODELS

    import r2o_mmseg  # noqa: F401  (registers R2OResNet)

    pkl, pth, marker = evil
    for path in (pkl, pth):
        backbone = MODELS.build(
            dict(type="R2OResNet", depth=18, style="pytorch", init_cfg=dict(type="Pretrained", checkpoint=str(path)))
        )
        with pytest.raises(ConversionError) as err:
            backbone.init_weights()
        assert str(path) in str(err.value) and "R2OResNet init_cfg checkpoint" in str(err.value)
    assert not marker.exists()


def d2_cfg(depth: int = 18):
    """The demo Mask R-CNN config, BN instead of SyncBN (one process)."""
    from detectron2.config import get_cfg

    from r2o_d2 import adapt_norm_to_world_size, add_r2o_config

    cfg = get_cfg()
    add_r2o_config(cfg)
    cfg.merge_from_file(str(ROOT / D2_CFG))
    cfg.MODEL.RESNETS.DEPTH = depth
    adapt_norm_to_world_size(cfg, 1)
    return cfg


def d2_model(depth: int = 18):
    from r2o_d2 import R2OTrainer

    return R2OTrainer.build_model(d2_cfg(depth)).eval()


def test_d2_checkpointer_refuses_malicious_weights_and_a_dropped_checkpoint(evil, tmp_path):
    from r2o_d2 import R2OCheckpointer

    pkl, pth, marker = evil
    model = d2_model()
    for path in (pkl, pth):
        with pytest.raises(ConversionError) as err:
            R2OCheckpointer(model).load(str(path))
        assert str(path) in str(err.value) and "ALLOW_PICKLE" in str(err.value)
    # a file dropped into a shared OUTPUT_DIR and named as its last checkpoint: --resume / --eval-only
    out = tmp_path / "output"
    out.mkdir()
    dropped = out / "model_final.pth"
    dropped.write_bytes(pth.read_bytes())
    (out / "last_checkpoint").write_text("model_final.pth")
    with pytest.raises(ConversionError) as err:
        R2OCheckpointer(model, str(out)).resume_or_load("", resume=True)
    assert str(dropped) in str(err.value)
    assert not marker.exists()


def train_net(*args, demo_dir, out):
    """tools/train_net.py in this process (tests/helpers/in_process.py): the real command line trains in test_d2.py."""
    small = [
        "INPUT.LSJ.IMAGE_SIZE", "96", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
        "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "(100,)", "DATASETS.TEST", "()", "OUTPUT_DIR", str(out),
    ]  # fmt: skip
    return train_net_cli("--config-file", D2_CFG, *args, *small, env={"R2O_DEMO_DIR": str(demo_dir)})


@pytest.mark.e2e  # builds detectron2's trainer (model, data) before the weights are refused
def test_train_net_refuses_malicious_weights(evil, demo_dir, tmp_path):
    pkl, pth, marker = evil
    for path in (pkl, pth):
        r = train_net("MODEL.WEIGHTS", str(path), "SOLVER.MAX_ITER", "1", demo_dir=demo_dir, out=tmp_path / "o")
        assert r.returncode == 2, (r.stdout + r.stderr)[-3000:]
        assert str(path) in r.stderr and "MODEL.R2O.ALLOW_PICKLE" in r.stderr
    assert not marker.exists()


# ---------------------------------------------------------------- real files still load


def model_zoo_pkl(net: nn.Module, path: Path) -> Path:
    """What detectron2's tools/convert-torchvision-to-d2.py writes (the model zoo's torchvision R-50.pkl)."""
    obj = net.state_dict()
    newmodel = {}
    for k in list(obj.keys()):
        old_k = k
        if "layer" not in k:
            k = "stem." + k
        for t in [1, 2, 3, 4]:
            k = k.replace(f"layer{t}", f"res{t + 1}")
        for t in [1, 2, 3]:
            k = k.replace(f"bn{t}", f"conv{t}.norm")
        k = k.replace("downsample.0", "shortcut")
        k = k.replace("downsample.1", "shortcut.norm")
        newmodel[k] = obj.pop(old_k).detach().numpy()
    with open(path, "wb") as f:
        pickle.dump({"model": newmodel, "__author__": "torchvision", "matching_heuristics": True}, f)
    return path


@pytest.fixture(scope="module")
def resnet50_and_pkl(tmp_path_factory):
    """A random torchvision ResNet-50, its model-zoo layout .pkl, an input and the net's stage outputs."""
    net = random_resnet(50)
    pkl = model_zoo_pkl(net, tmp_path_factory.mktemp("zoo") / "R-50.pkl")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = torchvision_stages(net, x)
    return net, pkl, x, expected


def test_model_zoo_torchvision_pkl_loads_in_detectron2_and_converts(resnet50_and_pkl, tmp_path, caplog, capsys):
    """R-50.pkl of torchvision layout → the R2O detectron2 backbone and tools/convert.py, equal outputs."""
    from detectron2.layers import ShapeSpec

    from r2o_d2 import R2OCheckpointer, build_r2o_resnet_backbone

    net, pkl, x, expected = resnet50_and_pkl
    assert "res2.0.shortcut.weight" in read_weights_pickle(pkl)["model"]
    cfg = d2_cfg(50)
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    model = nn.Module()
    model.backbone = build_r2o_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    with caplog.at_level("INFO"):
        ckpt = R2OCheckpointer(model)
        ckpt.load(str(pkl))
    trunk = [k for k in net.state_dict() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    assert ckpt.last_report.complete and len(ckpt.last_report.loaded) == len(trunk)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "pickl" in r.getMessage()]
    with torch.no_grad():
        d2 = model.backbone(x)
    for i, name in enumerate(["res2", "res3", "res4", "res5"]):
        torch.testing.assert_close(d2[name], expected[i], atol=1e-5, rtol=1e-5)

    assert tool("convert").main([str(pkl), str(tmp_path / "r50_tv.pth"), "--to", "torchvision"]) == 0
    printed = capsys.readouterr()
    assert "detectron2, ResNet-50" in printed.out and "dropped the classifier (stem.fc.*)" in printed.out
    assert "pickl" not in printed.err
    tv = torchvision.models.resnet50().eval()
    tv.load_state_dict(torch.load(tmp_path / "r50_tv.pth", weights_only=True), strict=False)
    with torch.no_grad():
        for a, b in zip(torchvision_stages(tv, x), expected):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_model_zoo_torchvision_pkl_loads_in_mmseg(resnet50_and_pkl, tmp_path):
    """The same .pkl as R2OResNet's init_cfg, and converted for mmseg's own ResNet: equal outputs."""
    from mmseg.registry import MODELS
    from test_weights import mmseg_resnet

    import r2o_mmseg  # noqa: F401

    _, pkl, x, expected = resnet50_and_pkl
    backbone = MODELS.build(
        dict(type="R2OResNet", depth=50, style="pytorch", init_cfg=dict(type="Pretrained", checkpoint=str(pkl)))
    )
    backbone.init_weights()
    assert backbone.load_report.complete
    backbone.eval()
    assert tool("convert").main([str(pkl), str(tmp_path / "r50_mm.pth"), "--to", "mmseg"]) == 0
    with torch.no_grad():
        outs = [backbone(x), mmseg_resnet(50, tmp_path / "r50_mm.pth")(x)]
    for out in outs:
        for i in range(4):
            torch.testing.assert_close(out[i], expected[i], atol=1e-5, rtol=1e-5)


def test_caffe2_msra_pkl_is_refused_with_the_reason(tmp_path):
    convert = tool("convert")
    blobs = {"conv1_w": np.zeros((64, 3, 7, 7), np.float32), "res_conv1_bn_s": np.ones(64, np.float32)}
    blobs["res2_0_branch2a_w"] = np.zeros((64, 64, 1, 1), np.float32)
    for i, obj in enumerate([{"model": blobs, "__author__": "Caffe2"}, {"blobs": blobs}, blobs]):
        path = tmp_path / f"R-50-msra{i}.pkl"
        path.write_bytes(pickle.dumps(obj))
        with pytest.raises(ConversionError) as err:
            from r2o_pretrain.weights import read_resnet_weights

            read_resnet_weights(path)
        message = str(err.value)
        assert str(path) in message and "Caffe2" in message and "1x1" in message and "BGR" in message
        assert convert.main([str(path), str(tmp_path / "o.pth"), "--to", "mmseg"]) == 2
        assert not (tmp_path / "o.pth").exists()


@pytest.mark.e2e  # runs a real pretraining / detectron2 training
def test_d2_run_resumes_from_its_own_checkpoint_weights_only(demo_dir, tmp_path):
    """A real training run: its checkpoints load under weights_only (+ the allow-list) and resume at the
    right iteration; the allow-list holds nothing the checkpoint does not need."""
    from r2o_d2.checkpoint import DETECTRON2_CHECKPOINT_GLOBALS

    out = tmp_path / "d2"
    net = random_resnet(18)
    pkl = model_zoo_pkl(net, tmp_path / "r18.pkl")
    r = train_net(
        "MODEL.WEIGHTS", str(pkl), "SOLVER.MAX_ITER", "1", "SOLVER.CHECKPOINT_PERIOD", "1", demo_dir=demo_dir, out=out
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    log = (out / "log.txt").read_text()
    assert "every backbone tensor was loaded" in log and "detectron2" in log
    assert "unpickling" not in log
    ckpt = out / "model_final.pth"
    state = read_weights_file(ckpt, safe_globals=DETECTRON2_CHECKPOINT_GLOBALS)
    assert state["iteration"] == 0 and state["trainer"]["iteration"] == 0
    assert state["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == 1  # detectron2 0.6 saves no optimizer
    # the allow-list is exactly what the checkpoint needs beyond torch's own weights-only globals
    registered = torch.serialization.get_safe_globals()  # (importing r2o_mmseg registers mmengine's)
    torch.serialization.clear_safe_globals()
    try:
        with torch.serialization.safe_globals(list(DETECTRON2_CHECKPOINT_GLOBALS)):
            torch.load(ckpt, weights_only=True)
        for needed in DETECTRON2_CHECKPOINT_GLOBALS:
            with pytest.raises(pickle.UnpicklingError):
                others = [g for g in DETECTRON2_CHECKPOINT_GLOBALS if g is not needed]
                with torch.serialization.safe_globals(others):
                    torch.load(ckpt, weights_only=True)
    finally:
        torch.serialization.add_safe_globals(registered)

    r = train_net("--resume", "SOLVER.MAX_ITER", "2", demo_dir=demo_dir, out=out)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    log = (out / "log.txt").read_text()
    assert "Starting training from iteration 1" in log and "full unpickling" not in log
    assert read_weights_file(out / "model_final.pth", safe_globals=DETECTRON2_CHECKPOINT_GLOBALS)["iteration"] == 1


def test_d2_training_state_with_optimizer_scheduler_and_grad_scaler_resumes_weights_only(tmp_path):
    """What detectron2's checkpointers save for a trainer (model, optimizer, scheduler, grad scaler,
    iteration), written by its own save() and read back by R2OCheckpointer on --resume."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.solver import build_lr_scheduler, build_optimizer

    from r2o_d2 import R2OCheckpointer, R2OTrainer

    def trainer_parts(cfg, scale):
        model = R2OTrainer.build_model(cfg)
        optimizer = build_optimizer(cfg, model)
        return model, optimizer, build_lr_scheduler(cfg, optimizer), torch.amp.GradScaler("cpu", init_scale=scale)

    cfg = d2_cfg()
    model, optimizer, scheduler, scaler = trainer_parts(cfg, 512.0)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()  # momentum buffers
    scheduler.step()
    out = tmp_path / "output"
    out.mkdir()
    parts = dict(optimizer=optimizer, scheduler=scheduler, grad_scaler=scaler)
    DetectionCheckpointer(model, str(out), **parts).save("model_0000004", iteration=4)

    model2, optimizer2, scheduler2, scaler2 = trainer_parts(cfg, 2.0)
    parts2 = dict(optimizer=optimizer2, scheduler=scheduler2, grad_scaler=scaler2)
    loaded = R2OCheckpointer(model2, str(out), **parts2).resume_or_load("", resume=True)
    assert loaded["iteration"] == 4
    assert scheduler2.last_epoch == scheduler.last_epoch == 1 and scaler2.get_scale() == 512.0
    key = next(iter(optimizer.state))
    key2 = next(iter(optimizer2.state))
    torch.testing.assert_close(optimizer2.state[key2]["momentum_buffer"], optimizer.state[key]["momentum_buffer"])
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), name
