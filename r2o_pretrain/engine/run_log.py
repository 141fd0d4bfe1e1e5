"""Run logs: console + ``log.txt``, ``metrics.jsonl`` (one line per step, and one per online evaluation, whose
keys start with ``eval/``), TensorBoard scalars and images."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def setup_logging(out_dir: Path | None, rank: int = 0) -> None:
    """INFO to stderr on rank 0 (warnings on other ranks) and to ``out_dir/log.txt``."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_r2o", False):
            root.removeHandler(h)
    fmt = logging.Formatter(
        f"[%(asctime)s r2o{'' if rank == 0 else ' rank' + str(rank)}] %(levelname)s %(message)s", "%H:%M:%S"
    )
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    handlers: list[logging.Handler] = [console]
    if out_dir is not None:
        handlers.append(logging.FileHandler(out_dir / "log.txt"))
    for h in handlers:
        h.setFormatter(fmt)
        h._r2o = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(logging.INFO)


class MetricsLog:
    """Appends one JSON line per step to ``metrics.jsonl``; mirrors scalars and images to TensorBoard.

    ``resumed_at``: the step of the checkpoint a resumed run starts from. The steps a killed run logged after
    that checkpoint are run again, so their records are dropped from ``metrics.jsonl`` (rewritten in place) and
    hidden from TensorBoard (``purge_step``): each step and evaluation is logged once, as an uninterrupted run
    logs it. A run that starts from scratch (``resumed_at=None``) in a folder that holds another run's
    ``metrics.jsonl`` moves that file aside to ``metrics.<time>.jsonl`` (nothing is lost) and hides the old
    TensorBoard points, so the folder's curves are this run's; so does a resumed run whose steps were
    ``renumbered`` (other steps per epoch after --resume-with-changes), whose step axis is its new plan's.
    """

    def __init__(
        self, out_dir: Path, enabled: bool = True, resumed_at: int | None = None, renumbered: bool = False
    ) -> None:
        self.enabled = enabled
        self.file = None
        self.tb = None
        if not enabled:
            return
        path = out_dir / "metrics.jsonl"
        fresh_over_old = (resumed_at is None or renumbered) and path.is_file() and path.stat().st_size > 0
        if fresh_over_old:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            kept_as = out_dir / f"metrics.{stamp}.jsonl"
            n = 1
            while kept_as.exists():  # two runs within a second: never write over a kept file
                kept_as, n = out_dir / f"metrics.{stamp}-{n}.jsonl", n + 1
            path.replace(kept_as)
            logging.getLogger("r2o").warning(
                "%s held an earlier run's records; %s, so they were moved to %s",
                path,
                "this resumed run numbers its steps by its new plan"
                if renumbered
                else "this run starts from scratch (no --resume)",
                kept_as.name,
            )
        if resumed_at is not None and not renumbered and path.is_file():
            kept = [r for r in read_metrics(out_dir) if r.get("step", 0) <= resumed_at]
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            tmp.replace(path)  # atomic: a kill here leaves the old file or the new one, never half of it
        self.file = open(path, "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            purge = 1 if fresh_over_old else None if resumed_at is None else resumed_at + 1
            self.tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=purge)
        except ImportError:  # tensorboard is in the stack; a bare install still trains
            logging.getLogger("r2o").warning("tensorboard is not installed: no TensorBoard logs")

    def write(self, record: dict[str, Any], scalars: bool = True) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None and scalars:
            step = record["step"]
            evaluation = any(key.startswith("eval/") for key in record)  # its epoch and k: logged by the step
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and ("/" in key or not evaluation):
                    self.tb.add_scalar(key if "/" in key else f"train/{key}", value, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        if self.enabled and self.tb is not None:
            self.tb.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        if self.file is not None and not self.file.closed:
            self.file.close()
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def read_metrics(out_dir: Path) -> list[dict[str, Any]]:
    """The records of ``out_dir/metrics.jsonl`` in file order (a line cut short by a kill is skipped)."""
    path = Path(out_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def eval_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The online-evaluation records (those with ``eval/unsup_miou``), one per step (the last one wins)."""
    by_step = {r["step"]: r for r in records if "eval/unsup_miou" in r}
    return [by_step[s] for s in sorted(by_step)]


def logged_evaluations(out_dir: Path, up_to: int) -> tuple[set[int], bool]:
    """(steps with an online-evaluation record, whether the once-per-run rows were logged) of a run, from its
    records of steps <= ``up_to`` (the checkpoint's step: a record past it is of steps that will run again)."""
    records = [r for r in eval_records(read_metrics(out_dir)) if r["step"] <= up_to]
    return {r["step"] for r in records}, any("eval/random_unsup_miou" in r for r in records)
