"""A run is what its user asked for (issue 30), on a user's own folder of real photographs, run from a folder
that is not the checkout: ``--resume auto`` continues the run with its own settings and refuses changes of its
meaning (exit 2) unless ``--resume-with-changes``, which keeps the epoch bookkeeping; a given ``data.root``
writes and reads no demo and caches under ``R2O_CACHE_DIR``; Ctrl-C checkpoints, marks ``PREEMPTED`` and
exits 130 without a traceback, and a second Ctrl-C exits at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_main, tiny_overrides
from user_data import write_photo_folder

TOOL = str(ROOT / "tools" / "pretrain.py")


def photo_overrides(photos: Path, out: Path, **extra: object) -> list[str]:
    """tiny_overrides on the photos, with the superpixel cache left at its default (under R2O_CACHE_DIR)."""
    return [o for o in tiny_overrides(photos, out, **extra) if not o.startswith("data.superpixel_cache=")]


def env_for(cwd: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, "R2O_CACHE_DIR": str(cwd / "cache")}


def pretrain(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python tools/pretrain.py args`` run from ``cwd`` (the default config, configs/pretrain/demo.yaml)."""
    return subprocess.run(
        [sys.executable, TOOL, *args], cwd=cwd, env=env_for(cwd), capture_output=True, text=True, timeout=600
    )


def records(out: Path) -> dict[int, dict]:
    from r2o_pretrain.engine.run_log import read_metrics

    return {r["step"]: r for r in read_metrics(out) if "loss" in r}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_photo_folder(tmp_path_factory.mktemp("own") / "photos", n=6, size=(72, 96))


RUN = {"train__epochs": 2, "train__batch_size": 2, "data__num_workers": 2}
"""6 photos, batch 2: 3 steps/epoch, 2 epochs; two DataLoader workers (their RNG streams must resume too)."""


def run_overrides(photos: Path, out: Path) -> list[str]:
    return photo_overrides(photos, out, **RUN)


@pytest.fixture(scope="module")
def uninterrupted(photos, tmp_path_factory) -> Path:
    """The run of ``resumed_run`` without the kill, in this process (its superpixel cache in its own folder):
    what the resumed run must equal."""
    out = tmp_path_factory.mktemp("full") / "p"
    r = run_main("tools/pretrain.py", *tiny_overrides(photos, out, **RUN))
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def resumed_run(photos, tmp_path_factory):
    """The run on the photos SIGKILLed after step 5 (checkpoint of step 4), then resumed with only
    ``--output-dir X --resume auto``."""
    cwd = tmp_path_factory.mktemp("cwd")
    out = cwd / "runs" / "p"
    killed = pretrain(cwd, *run_overrides(photos, out), "debug.kill_at_step=5")
    assert killed.returncode == -9, killed.stderr[-3000:]  # really killed, mid-epoch, after step 5
    assert torch.load(out / "checkpoints/last.pth", weights_only=True)["step"] == 4
    before = records(out)
    resumed = pretrain(cwd, "--output-dir", str(out), "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return cwd, out, before, resumed


def tensorboard_steps(out: Path, tag: str = "train/loss") -> list[int]:
    """The steps of ``tag`` as TensorBoard shows them (its reader applies the resumed run's purge_step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


@pytest.mark.e2e
def test_killed_and_resumed_run_is_the_uninterrupted_run(resumed_run, uninterrupted):
    """Every loss to the last bit, the TensorBoard curve (step 5 ran twice, shown once) and the exported weights."""
    _, out, _, _ = resumed_run
    full, again = records(uninterrupted), records(out)
    assert sorted(full) == sorted(again) == list(range(1, 7))
    for step in full:
        assert again[step]["loss"] == full[step]["loss"], f"step {step}"
    assert tensorboard_steps(out) == tensorboard_steps(uninterrupted) == list(range(1, 7))
    a = torch.load(uninterrupted / "export/backbone_torchvision.pth", weights_only=True)
    b = torch.load(out / "export/backbone_torchvision.pth", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.e2e
def test_resume_auto_continues_the_run_with_its_own_settings(resumed_run, photos):
    cwd, out, before, resumed = resumed_run
    assert torch.load(out / "checkpoints/last.pth", weights_only=True)["step"] == 6
    used = torch.load(out / "checkpoints/last.pth", weights_only=True)["config"]
    assert used["data"]["root"] == str(photos) and used["train"]["batch_size"] == 2 and used["train"]["epochs"] == 2
    assert used["debug"]["kill_at_step"] == -1  # fault injection is not inherited: the resumed run ran to its end
    after = records(out)
    assert sorted(after) == list(range(1, 7))
    # step 5 ran before the kill and again after the resume (from step 4): the same loss, to the last bit
    assert after[5]["loss"] == before[5]["loss"]
    assert "resuming with settings that differ" not in resumed.stderr
    # item 7: the resume line names the epoch that the progress bar and metrics.jsonl gave step 4
    assert before[4]["epoch"] == 2
    assert f"resumed from {out / 'checkpoints/last.pth'} at step 4 (epoch 2 of 2, 1 of its 3 steps done)" in (
        resumed.stderr
    )
    # item 2: a given data.root writes and reads no demo; the cache is under R2O_CACHE_DIR, and the header says so
    assert not (cwd / "data").exists()
    cache = cwd / "cache" / "superpixels"
    assert len([p for p in cache.rglob("*") if p.is_file()]) == 6  # one entry per photo
    assert f"data: {photos}; superpixel cache: {cache}" in resumed.stderr


@pytest.mark.e2e
def test_resume_refuses_changes_of_the_run_and_allows_them_on_purpose(resumed_run, tmp_path):
    cwd, out, _, _ = resumed_run
    finished = torch.load(out / "checkpoints/last.pth", weights_only=True)
    assert finished["step"] == 6 and finished["steps_per_epoch"] == 3
    r = run_main(
        "tools/pretrain.py", "--output-dir", str(out), "--resume", "auto", "train.batch_size=4", "train.log_every=3"
    )
    assert r.returncode == 2 and "train.batch_size: 2 → 4" in r.stderr and "--resume-with-changes" in r.stderr
    assert "train.log_every" not in r.stderr.split("error:")[1]  # a harmless change is not a reason to refuse
    r = run_main(
        "tools/pretrain.py", "--output-dir", str(out), "--resume", "auto", "train.epochs=4", "model.method=byol"
    )
    assert r.returncode == 2 and "train.epochs: 2 → 4" in r.stderr and "model.method: 'r2o' → 'byol'" in r.stderr
    # a --config file is the command line's too: demo.yaml's settings are not this run's
    r = run_main(
        "tools/pretrain.py", "--config", "configs/pretrain/demo.yaml", "--output-dir", str(out), "--resume", "auto"
    )
    assert r.returncode == 2 and "data.root: " in r.stderr and "train.batch_size: 2 → 32" in r.stderr
    r = run_main("tools/pretrain.py", "--output-dir", str(out), "--resume-with-changes")
    assert r.returncode == 2 and "--resume-with-changes goes with --resume" in r.stderr
    assert torch.load(out / "checkpoints/last.pth", weights_only=True)["step"] == 6  # nothing was touched
    # on purpose: the finished run (2 epochs of 3 steps) with batch 3 is 2 epochs of 2 steps, i.e. finished at
    # step 4 of the new plan; nothing is trained again (the issue: step 60 re-read as epoch 10, 60 more steps)
    r = run_main(
        "tools/pretrain.py",
        "--output-dir",
        str(out),
        "--resume",
        "auto",
        "train.batch_size=3",
        "train.log_every=3",
        "--resume-with-changes",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "settings that do not change the run: train.log_every: 1 → 3" in r.stderr
    assert "changes to the run (--resume-with-changes): train.batch_size: 2 → 3" in r.stderr
    assert "steps per epoch 3 → 2: the checkpoint's step 6 (2 epoch(s) done) continues as step 4" in r.stderr
    state = torch.load(out / "checkpoints/last.pth", weights_only=True)
    assert (state["step"], state["steps_per_epoch"], state["config"]["train"]["batch_size"]) == (4, 2, 3)
    assert json.loads((out / "checkpoints/FINISHED").read_text()) == {"step": 4}
    assert torch.equal(state["model"]["online_encoder.conv1.weight"], finished["model"]["online_encoder.conv1.weight"])
    assert not records(out)  # no step ran; the earlier records (other step numbers) were moved aside
    (kept,) = out.glob("metrics.*.jsonl")
    assert len(kept.read_text().splitlines()) == 6


def test_renumbered_step_keeps_the_finished_epochs():
    from r2o_pretrain.engine.resume import Change, renumbered_step

    assert renumbered_step(22, 7, 3, 3) == 22  # same plan: same step
    assert renumbered_step(22, 7, 3, 6) == 42  # 7 epochs done → the start of epoch 8 of the new plan
    assert renumbered_step(60, 20, 3, 6) == 120  # a finished 20-epoch run stays finished
    assert Change("train.log_every", 5, 1).harmless and Change("eval.every_epochs", 0, 1).harmless
    assert Change("train.max_steps", -1, 10).harmless  # a stop point, not the plan: training in chunks
    assert not Change("train.epochs", 2, 3).harmless and not Change("data.root", "a", "b").harmless


def test_dry_run_with_a_data_root_writes_no_demo_and_warns_of_a_long_warm_up(photos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # demo.yaml (the default config) says data.demo=true: a given data.root wins, and nothing is written
    r = run_main("tools/pretrain.py", "--dry-run", f"data.root={photos}", "train.batch_size=2", "train.epochs=2")
    assert r.returncode == 0, r.stderr
    assert "N=6" in r.stdout and not (tmp_path / "data").exists() and not list(tmp_path.iterdir())
    # 6 images, batch 2: warm-up 3 x 6 // 2 = 9 steps against a run of 2 x 3 = 6
    r = run_main(
        "tools/pretrain.py",
        "--dry-run",
        f"data.root={photos}",
        "train.batch_size=2",
        "train.epochs=2",
        "optim.warmup_epochs=3",
    )
    assert r.returncode == 0 and "warning: the lr warm-up (9 steps" in r.stdout and "run (6 steps)" in r.stdout
    r = run_main("tools/pretrain.py", "--dry-run", f"data.root={photos}", "train.batch_size=2", "train.max_steps=2")
    assert "warning: train.max_steps=2 stops the run inside the lr warm-up (3 steps)" in r.stdout
    r = run_main("tools/pretrain.py", "--dry-run", f"data.root={photos}", "train.batch_size=2")
    assert "warning" not in r.stdout  # demo.yaml: 1 warm-up epoch of 6
    r = subprocess.run([sys.executable, TOOL, "--help"], capture_output=True, text=True, env=env_for(tmp_path))
    assert "data.root=/data/imagenet/train \\\n      eval.every_epochs=5" in r.stdout  # the examples' line breaks


def _wait_for(predicate, proc: subprocess.Popen, log: Path, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def _ctrl_c(proc: subprocess.Popen) -> None:
    """What a terminal's Ctrl-C does: SIGINT to the whole foreground process group (DataLoader workers too)."""
    os.killpg(proc.pid, signal.SIGINT)


@pytest.mark.e2e
def test_ctrl_c_checkpoints_at_the_current_step_and_exits_130(photos, tmp_path):
    out = tmp_path / "runs" / "c"
    args = photo_overrides(
        photos, out, train__epochs=4, train__batch_size=2, train__checkpoint_every=100, data__num_workers=1
    )
    log = tmp_path / "run.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [sys.executable, TOOL, *args], cwd=tmp_path, env=env_for(tmp_path), stdout=f, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            _wait_for(lambda: (out / "metrics.jsonl").is_file() and len(records(out)) >= 2, proc, log, "step 2")
            _ctrl_c(proc)
            assert proc.wait(timeout=300) == 130, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    marker = json.loads((out / "checkpoints/PREEMPTED").read_text())
    step = torch.load(out / "checkpoints/last.pth", weights_only=True)["step"]
    assert marker["signal"] == "SIGINT" and step == marker["step"] == max(records(out)) >= 2  # the current step
    assert "Ctrl-C: stopping after this step" in text
    # resumed, then Ctrl-C twice: the second exits at once, without a checkpoint
    log2 = tmp_path / "resumed.log"
    with open(log2, "w") as f:
        proc = subprocess.Popen(
            [sys.executable, TOOL, "--output-dir", str(out), "--resume", "auto"], cwd=tmp_path,
            env=env_for(tmp_path), stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            _wait_for(lambda: len(records(out)) > step, proc, log2, f"step {step + 1}")
            _ctrl_c(proc)
            time.sleep(0.02)
            _ctrl_c(proc)
            assert proc.wait(timeout=60) == 130, log2.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    text = log2.read_text()
    assert f"at step {step} (" in text and "second Ctrl-C: exiting now" in text and "Traceback" not in text
    assert torch.load(out / "checkpoints/last.pth", weights_only=True)["step"] == step  # no checkpoint written


def test_ctrl_c_while_starting_exits_130_without_a_traceback(tmp_path):
    """Ctrl-C during the seconds of torch's import, before main() runs: one line, exit 130."""
    proc = subprocess.Popen(
        [sys.executable, TOOL, "--dry-run"], cwd=tmp_path, env=env_for(tmp_path), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        maps = Path(f"/proc/{proc.pid}/maps")
        deadline = time.monotonic() + 60
        while "libtorch" not in maps.read_text():  # torch is being imported: the script's handler is set
            assert proc.poll() is None and time.monotonic() < deadline, "no torch import seen"
            time.sleep(0.01)
        _ctrl_c(proc)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted (Ctrl-C) while starting: nothing to save" in err and "Traceback" not in err, err[-3000:]
