"""mmengine's and detectron2's own checkpoints — written by their real savers — are read by tools/convert.py and
tools/eval_unsup_seg.py under ``weights_only``, with exactly the globals they name (nothing is unpickled fully),
also in a process that never imported r2o_mmseg; what such a file must not do stays refused."""

from __future__ import annotations

import logging
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import run_main
from torch.utils.data import Dataset

from r2o_pretrain.weights import ConversionError, read_weights_file


@pytest.fixture
def no_registered_globals():
    """As in a fresh process: no allow-list installed by an earlier ``import r2o_mmseg``."""
    registered = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        yield
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(registered)


class _Images(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        return {"inputs": torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(i))}


def _toy_mmengine_model():
    from mmengine.model import BaseModel

    class ResNetToy(BaseModel):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = torchvision.models.resnet18(weights=None)

        def forward(self, inputs, data_samples=None, mode="tensor"):
            out = self.backbone(torch.stack(inputs) if isinstance(inputs, list) else inputs)
            return {"loss": out.pow(2).mean()} if mode == "loss" else out

    return ResNetToy()


@pytest.fixture(scope="module")
def mmengine_checkpoint(tmp_path_factory) -> tuple[Path, dict]:
    """``iter_2.pth`` written by mmengine's own Runner and CheckpointHook (message hub, optimizer, schedulers)."""
    from mmengine.runner import Runner

    work = tmp_path_factory.mktemp("mmengine_run")
    runner = Runner(
        model=_toy_mmengine_model(),
        work_dir=str(work),
        train_dataloader=dict(
            dataset=_Images(), sampler=dict(type="DefaultSampler", shuffle=False), batch_size=2, num_workers=0
        ),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01, momentum=0.9)),
        param_scheduler=dict(type="LinearLR", start_factor=0.5, by_epoch=False, begin=0, end=2),
        train_cfg=dict(by_epoch=False, max_iters=2),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=2, by_epoch=False)),
        default_scope=None,
        randomness=dict(seed=0),
    )
    runner.train()
    state = {k: v.detach().clone() for k, v in runner.model.backbone.state_dict().items()}
    logging.getLogger("mmengine").handlers.clear()  # its file handler points into work/
    return work / "iter_2.pth", state


def test_mmengine_checkpoint_needs_mmengines_globals(mmengine_checkpoint, no_registered_globals):
    """The file is what the issue saw: plain torch.load(weights_only=True) refuses it."""
    path, _ = mmengine_checkpoint
    with pytest.raises(pickle.UnpicklingError, match="HistoryBuffer|numpy"):
        torch.load(path, weights_only=True)
    assert "mmengine.logging.history_buffer.HistoryBuffer" in torch.serialization.get_unsafe_globals_in_checkpoint(path)


def test_mmengine_runner_checkpoint_converts_and_evaluates(
    mmengine_checkpoint, no_registered_globals, demo_dir, tmp_path
):
    path, backbone = mmengine_checkpoint
    obj = read_weights_file(path)
    assert obj["meta"]["iter"] == 2 and len(obj["message_hub"]["log_scalars"]["train/loss"].data[0]) == 2
    out = tmp_path / "r18.pth"
    r = run_main("tools/convert.py", str(path), str(out), "--to", "torchvision")
    assert r.returncode == 0, r.stderr
    assert "mmengine, ResNet-18" in r.stdout and "unpickling" not in r.stdout + r.stderr
    written = torch.load(out, weights_only=True)
    # every backbone tensor (the BatchNorm step counters num_batches_tracked are not weights: not converted)
    assert set(written) == {k for k in backbone if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    for key, value in written.items():
        assert torch.equal(value, backbone[key]), key
    images, masks = demo_dir / "fg_masks/images", demo_dir / "fg_masks/masks"
    args = ["--images", str(images), "--masks", str(masks), "--size", "64", "--n-segments", "20", "--limit", "2"]
    r = run_main("tools/eval_unsup_seg.py", "--checkpoint", str(path), *args, "--no-colour")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1].startswith("mIoU")


class _Attr:
    """Pickles as getattr(owner, name), the way pickle protocol 2 writes a class's method."""

    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def __reduce__(self):
        return getattr, (self.owner, self.name)


def test_mmengine_globals_allow_nothing_else(no_registered_globals, tmp_path):
    from mmengine.logging import HistoryBuffer

    buffer = HistoryBuffer()
    buffer.update(3.0)
    for name, payload in (
        ("update", _Attr(HistoryBuffer, "update")),
        ("init", _Attr(HistoryBuffer, "__init__")),
        ("posix", os.system),  # a bare reference to a function beside a real message hub
    ):
        path = tmp_path / f"bad_{name}.pth"
        torch.save({"state_dict": {"w": torch.ones(1)}, "message_hub": {"loss": buffer}, "x": payload}, path)
        with pytest.raises(ConversionError) as err:
            read_weights_file(path)
        assert str(path) in str(err.value)
        assert "only HistoryBuffer's statistics methods" in str(err.value) or "posix.system" in str(err.value)
    assert getattr not in torch.serialization.get_safe_globals()


def test_without_mmengine_the_refusal_says_to_install_it(mmengine_checkpoint, no_registered_globals, monkeypatch):
    path, _ = mmengine_checkpoint
    monkeypatch.setitem(sys.modules, "mmengine.logging.history_buffer", None)  # import now raises ImportError
    with pytest.raises(ConversionError) as err:
        read_weights_file(path)
    text = str(err.value)
    assert str(path) in text and "install mmengine" in text and "--allow-pickle" in text


def test_detectron2_checkpointer_file_converts_under_weights_only(no_registered_globals, tmp_path):
    """detectron2's own training checkpoint (model, optimizer, scheduler, iteration) → torchvision weights."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.solver import build_lr_scheduler, build_optimizer
    from test_weights_security import d2_cfg

    from r2o_d2 import R2OTrainer
    from r2o_pretrain.weights.resnet_keys import detectron2_to_torchvision

    cfg = d2_cfg()
    model = R2OTrainer.build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    scheduler.step()
    DetectionCheckpointer(model, str(tmp_path), optimizer=optimizer, scheduler=scheduler).save(
        "model_final", iteration=7
    )
    path = tmp_path / "model_final.pth"
    assert read_weights_file(path)["iteration"] == 7
    out = tmp_path / "r18.pth"
    r = run_main("tools/convert.py", str(path), str(out), "--to", "torchvision")
    assert r.returncode == 0, r.stderr
    assert "unpickling" not in r.stdout + r.stderr
    trunk = {
        detectron2_to_torchvision(k[len("backbone.bottom_up.") :]): v
        for k, v in model.state_dict().items()
        if k.startswith("backbone.bottom_up.")
    }
    written = torch.load(out, weights_only=True)
    assert set(written) == {k for k in trunk if not k.endswith("num_batches_tracked")}
    for key, value in written.items():
        assert torch.equal(value, trunk[key]), key
