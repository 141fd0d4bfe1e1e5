"""Shared fixtures: small generated data, and a tiny pretraining config that trains in seconds on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# One intra-op thread per process, set before torch is imported, for this process and every subprocess: `make
# test` runs two pytest workers on two cores, and each process's OpenMP threads beyond its share of the cores
# spin against the other worker's (a tiny training took 2.6x as long with 2 threads as with 1 on the loaded
# machine). Export OMP_NUM_THREADS to choose otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # also if a plugin imported torch before this file

ROOT = Path(__file__).resolve().parents[1]

# Modules whose every test runs real training, fine-tuning or torchrun in subprocesses (marked e2e, so
# `make test-quick` skips them); elsewhere a test is e2e when it needs a pretraining checkpoint or says so.
E2E_MODULES = {
    "test_cityscapes_e2e",
    "test_d2",
    "test_environment",
    "test_mmseg",
    "test_mmseg_protocols_e2e",
    "test_online_eval",
    "test_roundtrip_d2",
    "test_roundtrip_mmseg",
    "test_scale",
    "test_trainer",
}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        if module in E2E_MODULES or "r2o_checkpoint" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


def shared_once(tmp_path_factory, name: str, make) -> Path:
    """``make(folder)`` once per test session, also under pytest-xdist: the workers share one folder beside
    their own temp dirs, the first makes it under a file lock, the others wait and reuse it."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # <root>/popen-gwN → <root>, common to the session's workers
    folder, done = base / name, base / f"{name}.done"
    with FileLock(str(base / f"{name}.lock")):
        if not done.exists():
            folder.mkdir(parents=True, exist_ok=True)
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A small demo dataset (every export), written once per test session."""
    from r2o_pretrain.scenes.demo import write_demo_dataset

    return shared_once(
        tmp_path_factory,
        "demo",
        lambda folder: write_demo_dataset(folder, n_train=24, n_val=8, n_fg=8, size=96, seed=1),
    )


def tiny_overrides(data_root: Path, out: Path, **extra: object) -> list[str]:
    values = {
        "data.root": str(data_root),
        "data.view_size": 64,
        "data.raw_size": 64,
        "data.n_segments": 20,
        "data.num_workers": 0,
        "data.superpixel_cache": str(out / "sp_cache"),
        "model.depth": 18,
        "model.projector_hidden": 64,
        "model.projector_out": 32,
        "model.predictor_hidden": 64,
        "curriculum.k_start": 8,
        "curriculum.k_end": 2,
        "optim.warmup_epochs": 1,
        "train.epochs": 2,
        "train.batch_size": 4,
        "train.output_dir": str(out),
        "train.log_every": 1,
        "train.image_log_every": 4,
        "train.checkpoint_every": 2,
        "train.regions_png": False,
        "train.seed": 3,
    }
    values.update({k.replace("__", "."): v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in values.items()]


def run_tool(*args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a script under tools/ (or a module with -m) with this interpreter; output captured."""
    cmd = [sys.executable, *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)


def run_main(tool: str, *args: str) -> subprocess.CompletedProcess:
    """``python tools/<tool> args`` in this process (its ``main(argv)``), returned as ``run_tool`` does.

    For the command lines' error paths and for short trainings that need no process of their own (no signal,
    kill or torchrun; loader workers are forked as usual): the same code as a subprocess without paying an
    interpreter start and torch's import (~5 s each) per call. The log handlers a run adds to the root
    logger (its console and ``log.txt``) are closed and removed when it returns.
    """
    import contextlib
    import importlib.util
    import io
    import logging

    spec = importlib.util.spec_from_file_location(f"_tool_{Path(tool).stem}", ROOT / tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = module.main(list(args))
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_r2o", False)]:
            root.removeHandler(handler)
            handler.close()
    return subprocess.CompletedProcess([tool, *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def r2o_checkpoint(demo_dir, tmp_path_factory) -> Path:
    """A real pretraining checkpoint (ResNet-18, 2 steps) for the conversion, plugin and eval tests."""

    def pretrain(out: Path) -> None:
        r = run_main(
            "tools/pretrain.py", *tiny_overrides(demo_dir / "images", out, train__epochs=1, train__max_steps=2)
        )
        assert r.returncode == 0, r.stderr[-2000:]

    return shared_once(tmp_path_factory, "pretrained", pretrain) / "checkpoints/last.pth"


def official_checkpoint(net: nn.Module) -> dict:
    """A checkpoint in the authors' real layout around torchvision ResNet ``net``'s weights.

    ``{config, epoch, steps, model, optimizer, amp}``; ``model`` keys are ``module.``-prefixed:
    ``online_network.encoder.{0,1,4-7}.*`` (net's weights), ``online_network.projetion.*`` (sic),
    ``target_network.*`` (all ones, to tell it apart), ``predictor.*``, and ``_fpn.{0..7}.*``, a second
    copy of the target encoder (all twos here) that makes a strict reload fail.
    """
    encoder = nn.Sequential(*list(net.children())[:-2])
    model = {}
    for k, v in encoder.state_dict().items():
        model[f"module.online_network.encoder.{k}"] = v
        model[f"module.target_network.encoder.{k}"] = v * 0 + 1 if v.is_floating_point() else v
        model[f"module._fpn.{k}"] = v * 0 + 2 if v.is_floating_point() else v
    for prefix in ("online_network.projetion", "target_network.projetion", "predictor"):
        model[f"module.{prefix}.net.0.weight"] = torch.zeros(8, 8)
        model[f"module.{prefix}.net.1.running_mean"] = torch.zeros(8)
    return {
        "config": {"trainer": {"total_epochs": 300}, "model": {"backbone": {"type": "resnet50"}}},
        "epoch": 300,
        "steps": 93600,
        "model": model,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "momentum": 0.9, "params": [0, 1]}]},
        "amp": {"loss_scaler0": {"loss_scale": 1.0, "unskipped": 0}},
    }
