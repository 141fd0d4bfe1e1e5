"""Preemption: on a scheduler's warning signal, finish the step, checkpoint, and exit so the job is requeued.

Schedulers warn before they kill: SLURM sends the signal of ``--signal=USR1@120`` 120 s before the time
limit and SIGTERM (then SIGKILL after ``KillWait``) on preemption; cloud schedulers send SIGTERM.
``PreemptionGuard`` turns each signal named in ``train.preempt_signals`` into a flag (the handler does
nothing else but, for Ctrl-C, write one line to the terminal). After every optimiser step the ranks
all-reduce that flag (one tiny collective), so all of them stop after the same step, whichever of them got the signal. Rank 0 then writes the checkpoint
(atomically, like every checkpoint) and the marker ``checkpoints/PREEMPTED`` (JSON: step, signal), and
every rank exits with

* **exit code 0 under torchrun**: a non-zero worker exit makes torchrun restart the whole group in
  place (``--max-restarts``) instead of ending the job step, so the job could not be requeued;
* **exit code 75** (``EX_TEMPFAIL``, "try again later") for a single process (``python tools/pretrain.py``).

**Ctrl-C** (SIGINT) is caught the same way whatever ``train.preempt_signals`` says: the run finishes its
step, writes the checkpoint and the marker, and exits with **130** (128 + SIGINT, what a shell reports for
Ctrl-C; 0 under torchrun), without a traceback. A second Ctrl-C exits at once (``os._exit(130)``), losing
the steps since the last checkpoint.

The marker is what a job script looks at to requeue (``tools/slurm/pretrain.sbatch``); the requeued run's
``--resume auto`` continues exactly and removes it at its start.

The launcher: torchrun catches SIGTERM, SIGINT, SIGHUP and SIGQUIT, sends the same signal to every
worker's process group, waits ``--shutdown-timeout`` seconds (default 30) and then SIGKILLs what is
left; it ends with exit code 1 whatever the workers did. Any other signal (SIGUSR1) kills torchrun itself
unless it is named in ``--signals-to-handle`` (torchrun overwrites ``TORCHELASTIC_SIGNALS_TO_HANDLE`` from that
flag). torchrun signals each worker's whole process group, and SLURM every process of the job step, so the
DataLoader's worker processes get the signal too; torch makes them die of SIGTERM, which would kill the
step in progress. ``install(loader)`` therefore makes them ignore these signals (their parent stops them).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from torch.utils.data import DataLoader

from .distributed import DistInfo, any_true

logger = logging.getLogger("r2o")

EXIT_PREEMPTED_SINGLE_PROCESS = 75  # EX_TEMPFAIL
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C, as shells report it
EXIT_PREEMPTED_UNDER_TORCHRUN = 0
MARKER_NAME = "PREEMPTED"


class Preempted(SystemExit):
    """Raised after the preemption checkpoint is written; its ``code`` is the process's exit code."""


def parse_signals(names: Sequence[str]) -> list[signal.Signals]:
    """['SIGTERM', 'SIGUSR1'] → signal numbers; ValueError for names that are not catchable signals."""
    out = []
    for name in names:
        sig = getattr(signal, str(name), None)
        if not isinstance(sig, signal.Signals) or sig in (signal.SIGKILL, signal.SIGSTOP):
            raise ValueError(f"train.preempt_signals: '{name}' is not a signal that can be caught (e.g. SIGTERM)")
        out.append(sig)
    return out


def preempted_exit_code(received: signal.Signals | None = None) -> int:
    """0 in a torchrun worker (no in-place restart of the group); in a single process 130 after Ctrl-C
    (SIGINT), else 75."""
    if "TORCHELASTIC_RUN_ID" in os.environ:
        return EXIT_PREEMPTED_UNDER_TORCHRUN
    return EXIT_INTERRUPTED if received == signal.SIGINT else EXIT_PREEMPTED_SINGLE_PROCESS


def read_marker(checkpoint_dir: str | os.PathLike) -> dict | None:
    """The content of ``checkpoint_dir/PREEMPTED`` ({step, signal, time}), or None when there is none."""
    path = Path(checkpoint_dir) / MARKER_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class IgnoreSignalsThen:
    """A DataLoader ``worker_init_fn``: ignore ``signals`` in the worker, then run ``then`` (if any)."""

    signals: tuple[signal.Signals, ...]
    then: Callable[[int], None] | None = None

    def __call__(self, worker_id: int) -> None:
        for sig in self.signals:
            signal.signal(sig, signal.SIG_IGN)
        if self.then is not None:
            self.then(worker_id)


class PreemptionGuard:
    """Install at the start of training; ask ``stop_requested()`` on every rank after every step.

    ``ctrl_c``: catch SIGINT too (Ctrl-C checkpoints; a second one exits at once)."""

    def __init__(
        self, signal_names: Sequence[str], info: DistInfo, checkpoint_dir: str | os.PathLike, ctrl_c: bool = True
    ) -> None:
        self.signals = parse_signals(signal_names)
        if ctrl_c and signal.SIGINT not in self.signals:
            self.signals.append(signal.SIGINT)
        self.info = info
        self.marker = Path(checkpoint_dir) / MARKER_NAME
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}
        self._loader: DataLoader | None = None
        self._worker_init_fn: Callable[[int], None] | None = None

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum == signal.SIGINT and self.received is not None:  # Ctrl-C after a signal: exit now
            os.write(2, b"\nsecond Ctrl-C: exiting now, without a checkpoint of the steps since the last one\n")
            os._exit(EXIT_INTERRUPTED)
        if self.received is None:
            self.received = signal.Signals(signum)
            if signum == signal.SIGINT:  # the step in progress can take a while: say what is happening
                os.write(2, b"\nCtrl-C: stopping after this step with a checkpoint (Ctrl-C again: exit at once)\n")

    def install(self, loader: DataLoader | None = None) -> None:
        """Catch the signals here, ignore them in ``loader``'s worker processes; rank 0 removes the marker
        of an earlier preemption."""
        if self.signals and threading.current_thread() is not threading.main_thread():
            logger.warning("training runs outside the main thread: preemption signals are not caught")
            self.signals = []
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        if loader is not None and self.signals:
            self._loader, self._worker_init_fn = loader, loader.worker_init_fn
            loader.worker_init_fn = IgnoreSignalsThen(tuple(self.signals), loader.worker_init_fn)
        if self.info.is_main:
            self.marker.unlink(missing_ok=True)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._loader is not None:
            self._loader.worker_init_fn = self._worker_init_fn
            self._loader = None

    def stop_requested(self) -> bool:
        """True on every rank when any rank got a signal. A collective: call it on all ranks, same step."""
        if not self.signals:
            return False
        return any_true(self.received is not None, self.info)

    def exit(self, step: int, checkpoint: str | os.PathLike) -> NoReturn:
        """After the checkpoint of ``step`` is written: rank 0 writes the marker; raise ``Preempted``."""
        code = preempted_exit_code(self.received)
        name = self.received.name if self.received is not None else "a signal on another rank"
        if self.info.is_main:
            record = {"step": step, "signal": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            tmp = self.marker.with_name(f".{MARKER_NAME}.tmp")
            tmp.write_text(json.dumps(record) + "\n")
            os.replace(tmp, self.marker)
            logger.warning(
                "preempted (%s): stopped after step %d, checkpoint %s, marker %s; exiting with code %d. "
                "Continue with --resume auto.",
                name,
                step,
                checkpoint,
                self.marker,
                code,
            )
        raise Preempted(code)
