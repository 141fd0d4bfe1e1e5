"""Writing and reading this project's training checkpoints (the one owner of their format).

A checkpoint holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``. Writes are atomic: a killed run leaves the previous file intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "r2o-pretrain"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names the file and what to do."""


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by ``atomic_save(training_state(...))`` — weights only, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign pickle, not a torch file at all
        raise CheckpointError(
            f"{path} is not a readable r2o training checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
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
