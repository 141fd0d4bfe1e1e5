"""Scale and faults: the compact region cache, checkpoint retention, preemption, elastic restarts,
two nodes on one host, and the SLURM scripts. The distributed tests run real torchrun processes (gloo
on CPU) and kill or signal them for real; every process they start is killed in a finally block."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, tiny_overrides
from PIL import Image

from r2o_pretrain.data.region_cache import EntryError, decode_labels, encode_labels
from r2o_pretrain.data.superpixels import SuperpixelCache, slic_labels

HELPER = str(ROOT / "tests/helpers/ddp_train.py")
STEPS = 6  # 24 demo images / (batch 4 x 2 ranks) = 3 steps per epoch, 2 epochs
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# ---------------------------------------------------------------- region cache


def test_region_cache_entries_round_trip_compactly_and_reject_bad_bytes():
    labels = np.repeat(np.arange(100), 49 * 49 // 100 + 1)[: 49 * 49].reshape(49, 49)
    blob = encode_labels(labels)
    assert blob[:4] == b"R2OS" and blob[4] == 2 and blob[5] == 1  # magic, version 2, uint8
    out = decode_labels(blob)
    assert out.dtype == np.int64 and np.array_equal(out, labels)
    many = (np.arange(64 * 64) % 300).reshape(64, 64)  # > 256 segments: uint16
    assert encode_labels(many)[5] == 2 and np.array_equal(decode_labels(encode_labels(many)), many)
    for bad, why in [
        (b"garbage", "shorter"),
        (b"NOPE" + blob[4:], "magic"),
        (blob[:4] + bytes([3]) + blob[5:], "newer r2o"),
        (blob[:-5], "corrupt"),
        (blob[:12] + blob[12:20] + bytes([blob[20] ^ 0xFF]) + blob[21:], "corrupt"),
    ]:
        with pytest.raises(EntryError, match=why):
            decode_labels(bad)
    with pytest.raises(EntryError):
        encode_labels(np.full((4, 4), 70_000))


def test_region_cache_entry_of_a_real_photograph_is_small():
    from skimage import data as skdata

    rgb = np.asarray(Image.fromarray(skdata.astronaut()).resize((224, 224), Image.BICUBIC))
    labels = slic_labels(rgb, 100)
    blob = encode_labels(labels)
    assert len(blob) < 8_000, len(blob)  # the earlier int16 .npy: 100,480 bytes
    assert np.array_equal(decode_labels(blob), labels)


def test_region_cache_key_holds_across_mounts_and_list_files(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    a = tmp_path / "machine_a" / "data"
    (a / "cls").mkdir(parents=True)
    Image.fromarray(rgb).save(a / "cls" / "x.png")
    b = tmp_path / "machine_b" / "mnt" / "imagenet"
    shutil.copytree(a, b)  # copy2 keeps the modification time, as rsync -a and cp -p do
    cache_dir = str(tmp_path / "cache")
    first = SuperpixelCache(cache_dir, 20, root=str(a))
    labels = first.labels_for(str(a / "cls" / "x.png"), rgb)
    other = SuperpixelCache(cache_dir, 20, root=str(b))
    assert other.entry(str(b / "cls" / "x.png"), 48) == first.entry(str(a / "cls" / "x.png"), 48)
    assert np.array_equal(other.read(str(b / "cls" / "x.png"), 48), labels) and other.hits == 1
    # data.root as a text file of paths: keys are relative to the list file's folder
    (b / "train.txt").write_text("cls/x.png\n")
    listed = SuperpixelCache(cache_dir, 20, root=str(b / "train.txt"))
    assert listed.relative_path(str(b / "cls" / "x.png")) == os.path.join("cls", "x.png")
    assert listed.read(str(b / "cls" / "x.png"), 48) is not None
    # a changed file (size or mtime) or other SLIC settings never share the entry
    assert SuperpixelCache(cache_dir, 30, root=str(b)).read(str(b / "cls" / "x.png"), 48) is None
    os.utime(b / "cls" / "x.png", (1, 1))
    assert other.read(str(b / "cls" / "x.png"), 48) is None


def test_earlier_npy_entries_are_converted_with_a_warning(tmp_path, caplog):
    rgb = np.random.default_rng(1).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    path = tmp_path / "img.png"
    Image.fromarray(rgb).save(path)
    cache = SuperpixelCache(str(tmp_path / "cache"), 20, root=str(tmp_path))
    labels = slic_labels(rgb, 20)
    legacy = cache.legacy_entry(str(path), 48)
    legacy.parent.mkdir(parents=True)
    np.save(legacy, labels.astype(np.int16))  # what earlier versions wrote
    with caplog.at_level(logging.WARNING):
        got = cache.read(str(path), 48)
    assert np.array_equal(got, labels) and cache.converted == 1 and cache.misses == 0
    assert "earlier .npy format" in caplog.text
    assert not legacy.exists() and cache.entry(str(path), 48).is_file()
    assert np.array_equal(SuperpixelCache(cache.directory, 20, root=str(tmp_path)).read(str(path), 48), labels)


# ---------------------------------------------------------------- checkpoints and the preemption guard


def test_checkpoint_retention_keeps_every_nth_epoch(tmp_path):
    from r2o_pretrain.engine.checkpoint import save_checkpoint

    last = tmp_path / "checkpoints" / "last.pth"
    kept = {}
    for step in range(1, 13):  # 3 steps per epoch, keep every 2 epochs
        k = save_checkpoint({"step": step, "w": torch.full((2,), float(step))}, last, 3, 2)
        if k is not None:
            kept[step] = k
    assert sorted(p.name for p in last.parent.iterdir()) == ["epoch_0002.pth", "epoch_0004.pth", "last.pth"]
    assert {s: p.name for s, p in kept.items()} == {6: "epoch_0002.pth", 12: "epoch_0004.pth"}
    assert torch.load(last.parent / "epoch_0002.pth", weights_only=True)["step"] == 6  # not overwritten later
    assert torch.load(last, weights_only=True)["step"] == 12
    assert save_checkpoint({"step": 6}, tmp_path / "x" / "last.pth", 3, 0) is None  # 0: only last.pth


def test_preemption_guard_flags_signals_and_exits_with_the_documented_code(tmp_path, monkeypatch):
    from r2o_pretrain.config import ConfigError, load_config
    from r2o_pretrain.engine.distributed import DistInfo
    from r2o_pretrain.engine.preemption import Preempted, PreemptionGuard, read_marker

    info = DistInfo(0, 1, 0, torch.device("cpu"))
    (tmp_path / "PREEMPTED").write_text("{}")  # a stale marker from an earlier preemption
    before = signal.getsignal(signal.SIGUSR1)
    guard = PreemptionGuard(["SIGTERM", "SIGUSR1"], info, tmp_path)
    guard.install()
    try:
        assert read_marker(tmp_path) is None and not guard.stop_requested()
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
        assert guard.stop_requested() and guard.received == signal.SIGUSR1
        monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
        with pytest.raises(Preempted) as single:
            guard.exit(7, tmp_path / "last.pth")
        assert single.value.code == 75 and read_marker(tmp_path)["step"] == 7
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")
        with pytest.raises(Preempted) as under_torchrun:
            guard.exit(7, tmp_path / "last.pth")
        assert under_torchrun.value.code == 0
    finally:
        guard.uninstall()
    assert signal.getsignal(signal.SIGUSR1) == before
    assert not PreemptionGuard([], info, tmp_path).stop_requested()
    with pytest.raises(ConfigError, match="SIGKILL"):
        load_config(None, ["train.preempt_signals=[SIGKILL]"])


# ---------------------------------------------------------------- real processes


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            kids.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(name))
    return kids


def _descendants(pid: int) -> list[int]:
    kids, out, todo = _children(), [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@contextmanager
def launched(*commands: tuple[list[str], Path], env: dict[str, str] | None = None):
    """Start each (argv, log file); on leaving, SIGKILL whatever of them and their descendants still runs."""
    procs, logs = [], []
    try:
        for argv, log in commands:
            logs.append(open(log, "w"))
            procs.append(
                subprocess.Popen(
                    [sys.executable, *argv],
                    cwd=ROOT,
                    env={**ENV, **(env or {})},
                    stdout=logs[-1],
                    stderr=subprocess.STDOUT,
                )
            )
        yield procs
    finally:
        for proc in procs:
            for pid in [*_descendants(proc.pid), proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=60)
        for f in logs:
            f.close()


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 400) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{log.name} still running after {timeout} s:\n{log.read_text()[-3000:]}")


def _wait_for_steps(out: Path, steps: int, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= steps:
            return
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} before step {steps}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"no step {steps} after {timeout} s:\n{log.read_text()[-3000:]}")


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in _records(out)}  # a step run again after a resume overwrites


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _overrides(demo_dir: Path, out: Path, **extra: object) -> list[str]:
    return tiny_overrides(demo_dir / "images", out, train__keep_every_epochs=1, **extra)


def _torchrun(*args: str) -> list[str]:
    return ["-m", "torch.distributed.run", "--monitor-interval", "0.5", *args]


@pytest.fixture(scope="module")
def two_nodes(demo_dir, tmp_path_factory):
    """An uninterrupted 2-rank run as two "nodes" on this host: two torchrun launchers, c10d rendezvous.

    Each node gets its own train.output_dir, so the one that writes checkpoints and logs shows itself.
    """
    tmp = tmp_path_factory.mktemp("two_nodes")
    endpoint = f"127.0.0.1:{_free_port()}"
    commands = []
    for node in ("a", "b"):
        args = _torchrun(
            "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint,
            "--rdzv-id", "r2o-two-nodes", HELPER, str(tmp),
            *_overrides(demo_dir, tmp / f"out_{node}", data__superpixel_cache=tmp / f"cache_{node}"),
        )  # fmt: skip
        commands.append((args, tmp / f"node_{node}.log"))
    with launched(*commands) as procs:
        codes = [_finish(p, log) for p, (_, log) in zip(procs, commands)]
    assert codes == [0, 0], "\n".join(log.read_text()[-2000:] for _, log in commands)
    return tmp


def test_two_nodes_train_with_identical_replicas_and_one_checkpoint_writer(two_nodes):
    writers = [d for d in (two_nodes / "out_a", two_nodes / "out_b") if d.exists()]
    assert len(writers) == 1  # the node without rank 0 wrote nothing at all into its output dir
    out = writers[0]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "FINISHED",
        "epoch_0001.pth",
        "epoch_0002.pth",
        "last.pth",
    ]
    assert torch.load(out / "checkpoints/last.pth", weights_only=True)["step"] == STEPS
    assert sorted(_losses(out)) == list(range(1, STEPS + 1))
    s0 = torch.load(two_nodes / "rank0.pt", weights_only=True)
    s1 = torch.load(two_nodes / "rank1.pt", weights_only=True)
    assert s0["world"] == s1["world"] == 2 and len(s0["state"]) > 50
    for key, value in s0["state"].items():
        assert torch.equal(value, s1["state"][key]), key


def _worker_pids(launcher: subprocess.Popen) -> dict[int, int]:
    """rank → pid of the launcher's worker processes (from their environment)."""
    ranks = {}
    for pid in _children().get(launcher.pid, []):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(b"RANK="):
                ranks[int(item[5:])] = pid
    return ranks


def test_sigterm_to_torchrun_preempts_all_ranks_and_resume_is_exact(two_nodes, demo_dir, tmp_path):
    out = tmp_path / "run"
    # no periodic checkpoint before the end of epoch 1: resuming exactly needs the preemption checkpoint;
    # a DataLoader worker per rank: it must survive the SIGTERM that torchrun sends to its process group
    args = _torchrun(
        "--standalone", "--nproc-per-node", "2", HELPER, str(tmp_path), "--resume", "auto",
        *_overrides(demo_dir, out, train__checkpoint_every=100, data__num_workers=1),
    )  # fmt: skip
    log = tmp_path / "preempted.log"
    with launched((args, log)) as (launcher,):
        _wait_for_steps(out, 1, launcher, log)
        launcher.send_signal(signal.SIGTERM)  # what a scheduler does to the job step
        _finish(launcher, log, timeout=120)
    text = log.read_text()
    marker = json.loads((out / "checkpoints/PREEMPTED").read_text())
    assert marker["signal"] == "SIGTERM" and 1 <= marker["step"] < STEPS, text[-3000:]
    assert torch.load(out / "checkpoints/last.pth", weights_only=True)["step"] == marker["step"]
    assert "exiting with code 0" in text and "killed by signal" not in text and "SIGKILL" not in text
    assert len(_records(out)) == marker["step"]  # every rank stopped after the same step

    log2 = tmp_path / "resumed.log"
    with launched((args, log2)) as (launcher,):
        assert _finish(launcher, log2) == 0, log2.read_text()[-3000:]
    assert f"resumed from {out / 'checkpoints/last.pth'} at step {marker['step']}" in log2.read_text()
    assert not (out / "checkpoints/PREEMPTED").exists()  # the resumed run cleared it, then finished
    assert _losses(out) == _losses(_writer(two_nodes))  # bit-identical to the uninterrupted run


def test_elastic_restart_after_a_worker_is_killed_resumes_exactly(two_nodes, demo_dir, tmp_path):
    out = tmp_path / "run"
    args = _torchrun(
        "--standalone", "--nproc-per-node", "2", "--max-restarts", "1", HELPER, str(tmp_path), "--resume", "auto",
        *_overrides(demo_dir, out, train__checkpoint_every=2),
    )  # fmt: skip
    log = tmp_path / "elastic.log"
    # torch's fix for restarts: a fresh rendezvous store per attempt (see r2o_pretrain/engine/distributed.py)
    with launched((args, log), env={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}) as (launcher,):
        _wait_for_steps(out, 3, launcher, log)  # checkpoints after steps 2 and 3 (the end of epoch 1)
        workers = _worker_pids(launcher)
        assert sorted(workers) == [0, 1], workers
        os.kill(workers[1], signal.SIGKILL)
        assert _finish(launcher, log) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "exitcode: -9" in text  # torchrun saw the lost worker and restarted the group
    resumed_at = int(re.search(r"resumed from \S+ at step (\d+)", text).group(1))
    steps = [r["step"] for r in _records(out)]
    first_attempt = len(steps) - (STEPS - resumed_at)  # steps 1..k, then the restart's resumed_at+1..STEPS
    assert steps == list(range(1, first_attempt + 1)) + list(range(resumed_at + 1, STEPS + 1))
    assert 2 <= resumed_at <= first_attempt and first_attempt >= 3
    assert _losses(out) == _losses(_writer(two_nodes))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "FINISHED",
        "epoch_0001.pth",
        "epoch_0002.pth",
        "last.pth",
    ]


def _writer(two_nodes: Path) -> Path:
    return next(d for d in (two_nodes / "out_a", two_nodes / "out_b") if d.exists())


# A single process (no torchrun) preempted by SIGUSR1 (exit 75, PREEMPTED, the checkpoint of the current step):
# test_online_eval.py's curve test, which sends it during an evaluation.


# ---------------------------------------------------------------- SLURM scripts


SLURM = ROOT / "tools" / "slurm"


@pytest.mark.parametrize("script", ["common.sh", "pretrain.sbatch", "finetune_d2.sbatch", "finetune_mmseg.sbatch"])
def test_slurm_scripts_parse(script):
    r = subprocess.run(["bash", "-n", str(SLURM / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _fake_slurm(tmp_path: Path, srun_body: str) -> dict[str, str]:
    """srun and scontrol stand-ins on PATH (no SLURM here): srun runs srun_body, scontrol logs requeues."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(
        f'#!/bin/bash\necho "$@" > "{tmp_path}/srun_args"\nenv > "{tmp_path}/srun_env"\n{srun_body}\n'
    )
    (bin_dir / "scontrol").write_text(
        f'#!/bin/bash\nif [ "$1" = show ]; then echo node001; echo node002; else echo "$@" >> "{tmp_path}/requeued"; fi\n'
    )
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_SUBMIT_DIR": str(ROOT),
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_JOB_NODELIST": "node[001-002]",
    }


def test_pretrain_sbatch_requeues_only_a_preempted_run(tmp_path):
    out = tmp_path / "run"
    preempted = f'mkdir -p "{out}/checkpoints"; echo \'{{"step": 5}}\' > "{out}/checkpoints/PREEMPTED"; exit 1'
    env = {**_fake_slurm(tmp_path, preempted), "OUTPUT_DIR": str(out)}
    r = subprocess.run(
        ["bash", str(SLURM / "pretrain.sbatch"), "data.root=/x"], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "requeued").read_text().split() == ["requeue", "4242"]
    srun_args = (tmp_path / "srun_args").read_text()
    for needed in [
        "--nnodes 2",
        "--rdzv-endpoint node001:",
        "--signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1",
    ]:
        assert needed in srun_args
    assert srun_args.rstrip().endswith(f"tools/pretrain.py --output-dir {out} --resume auto data.root=/x")
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in (tmp_path / "srun_env").read_text().splitlines()

    crashed = tmp_path / "crashed"
    crashed.mkdir()
    env = {**_fake_slurm(crashed, "exit 3"), "OUTPUT_DIR": str(crashed / "run")}
    r = subprocess.run(["bash", str(SLURM / "pretrain.sbatch")], env=env, capture_output=True, text=True)
    assert r.returncode == 3 and not (crashed / "requeued").exists()  # a crash is not requeued


def test_finetune_sbatch_requeues_on_usr1_and_waits_for_the_step(tmp_path):
    env = _fake_slurm(tmp_path, "sleep 3; exit 0")
    proc = subprocess.Popen(
        ["bash", str(SLURM / "finetune_d2.sbatch"), "--config-file", "x.yaml"], env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "srun_args").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # srun started: the trap is set
        proc.send_signal(signal.SIGUSR1)  # sbatch --signal=B:USR1@120 signals the batch shell
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert (tmp_path / "requeued").read_text().split() == ["requeue", "4242"]
    assert "--machine-rank" in (tmp_path / "srun_args").read_text()
