"""Writing and reading this project's training checkpoints (the one owner of their format).

A checkpoint holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``. Writes are atomic: a killed run leaves the previous file intact.
Retention: ``last.pth`` is overwritten at every save; at the end of every ``train.keep_every_epochs``-th
epoch it is also kept as ``epoch_NNNN.pth`` (a hard link to the same bytes, so keeping costs no write).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..weights.checkpoint_file import PRETRAIN_FORMAT as FORMAT
from ..weights.checkpoint_file import PRETRAIN_FORMAT_VERSION as FORMAT_VERSION
from ..weights.checkpoint_file import atomic_save
from ..weights.errors import exception_summary

logger = logging.getLogger("r2o")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names the file and what to do."""


def kept_checkpoint_path(last: str | os.PathLike, epoch: int) -> Path:
    """Where the checkpoint at the end of ``epoch`` (1-based count of finished epochs) is kept."""
    return Path(last).parent / f"epoch_{epoch:04d}.pth"


def save_checkpoint(
    state: dict[str, Any], last: str | os.PathLike, steps_per_epoch: int, keep_every_epochs: int
) -> Path | None:
    """Write ``state`` atomically to ``last``; when its step ends epoch E and E is a multiple of
    ``keep_every_epochs`` (> 0), also keep it as ``epoch_E.pth``. Returns the kept path, or None."""
    atomic_save(state, last)
    step = int(state["step"])
    if keep_every_epochs <= 0 or step == 0 or step % steps_per_epoch:
        return None
    epoch = step // steps_per_epoch
    if epoch % keep_every_epochs:
        return None
    kept = kept_checkpoint_path(last, epoch)
    _atomic_link_or_copy(Path(last), kept)
    logger.info("kept checkpoint of epoch %d: %s", epoch, kept)
    return kept


def _atomic_link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes the bytes of ``src``: a hard link where the filesystem has them, else a copy."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:  # no hard links here (some network and object-store filesystems)
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def training_state(
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    step: int,
    epoch: int,
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": step,
        "epoch": epoch,
        "config": config,
        "model": model_state,
        "optimizer": optimizer_state,
        **(extra or {}),
    }


FINISHED_MARKER = "FINISHED"  # beside last.pth, JSON {"step": N}: the run ended (export written) at step N


def mark_finished(last: str | os.PathLike, step: int) -> None:
    """Record that the run whose checkpoint is ``last`` finished at ``step`` (after its export)."""
    (Path(last).parent / FINISHED_MARKER).write_text(json.dumps({"step": step}))


def clear_finished(last: str | os.PathLike) -> None:
    """Forget the finished mark (a run writes its first checkpoint over ``last``)."""
    (Path(last).parent / FINISHED_MARKER).unlink(missing_ok=True)


def _finished_step(last: Path) -> int | None:
    try:
        return int(json.loads((last.parent / FINISHED_MARKER).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def checkpoint_progress(path: str | os.PathLike) -> tuple[int, int | None] | None:
    """(step, the step its run stops at, or None when the checkpoint predates that entry) of a training
    checkpoint, read without loading its tensors (``mmap``; a legacy non-zip file is read in full); None
    when it is not a readable r2o checkpoint."""
    state = None
    for mmap in (True, False):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            break
        except Exception:  # truncated, foreign, not a torch file; or a legacy file mmap cannot map
            continue
    if not isinstance(state, dict) or state.get("format") != FORMAT or "step" not in state:
        return None
    stop = state.get("stop_step")
    return int(state["step"]), None if stop is None else int(stop)


def unfinished_run_problem(last: str | os.PathLike) -> str | None:
    """Why a run from scratch must not replace ``last`` (None: there is none, or its run finished).

    Replacing is safe only for a run that recorded finishing (``FINISHED`` at the checkpoint's step); an
    unfinished run (a requeue script that forgot --resume auto), a run that predates the mark, and a file
    that is not a readable r2o checkpoint are kept."""
    last = Path(last)
    if not last.is_file():
        return None
    progress = checkpoint_progress(last)
    if progress is not None and _finished_step(last) == progress[0]:
        return None
    keep = f"give this run another --output-dir, or delete {last} to start over in this one"
    if progress is None:
        return f"{last} is not a readable r2o training checkpoint, and a run from scratch would replace it: {keep}"
    step, stop = progress
    return (
        f"{last} holds a run at step {step}{f' of {stop}' if stop is not None else ''} that did not finish (no "
        f"{FINISHED_MARKER} mark beside it, written after a run's export), and a run from scratch would replace "
        f"it: continue it with --resume auto, or {keep}"
    )


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by ``atomic_save(training_state(...))`` — weights only, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign pickle, not a torch file at all
        raise CheckpointError(
            f"{path} is not a readable r2o training checkpoint ({exception_summary(exc)}). "
            "If the run was killed while writing, use the previous checkpoint; to fine-tune from other "
            "weights, see tools/convert.py."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an r2o training checkpoint (no 'format': '{FORMAT}' entry); "
            "--resume takes only files written by tools/pretrain.py"
        )
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer r2o (format {state['format_version']}); upgrade r2o")
    missing = [k for k in ("model", "optimizer", "step", "epoch", "config") if k not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}; it cannot resume a run")
    return state


def read_run_record(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint's entries other than the tensors (step, epoch, config, steps_per_epoch,
    world_size, ...), read without loading its weights (``mmap``); CheckpointError as ``load_training_state``
    for a file that is not a readable r2o checkpoint."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a legacy non-zip file cannot be mapped; a bad one gets load_training_state's message
        state = load_training_state(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT or "config" not in state or "step" not in state:
        state = load_training_state(path)  # raises with the reason
    return {k: v for k, v in state.items() if k not in ("model", "optimizer", "scaler")}
