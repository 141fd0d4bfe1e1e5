"""Shared fixtures: small generated data, and a tiny pretraining config that trains in seconds on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A small demo dataset (every export), written once per test session."""
    from r2o_pretrain.scenes.demo import write_demo_dataset

    return write_demo_dataset(tmp_path_factory.mktemp("demo"), n_train=24, n_val=8, n_fg=8, size=96, seed=1)


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


@pytest.fixture(scope="session")
def r2o_checkpoint(demo_dir, tmp_path_factory) -> Path:
    """A real pretraining checkpoint (ResNet-18, 2 steps) for the conversion, plugin and eval tests."""
    out = tmp_path_factory.mktemp("pretrained")
    r = run_tool("tools/pretrain.py", *tiny_overrides(demo_dir / "images", out, train__epochs=1, train__max_steps=2))
    assert r.returncode == 0, r.stderr[-2000:]
    return out / "checkpoints/last.pth"


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
