"""How this project's weight files reach the disk: the atomic write, and the training checkpoint's tag.

Neutral ground for ``engine/`` (which writes training checkpoints) and ``weights/`` (which reads every
format and writes exports): both import from here, and ``weights/`` imports nothing from ``engine/``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

PRETRAIN_FORMAT = "r2o-pretrain"  # the "format" entry of a training checkpoint (engine/checkpoint.py)
PRETRAIN_FORMAT_VERSION = 1


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` through a temporary file and a rename: a killed process leaves the
    previous file intact, never a half-written one."""
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
