"""Let mmengine's own checkpoints load under torch's ``weights_only=True`` default (torch >= 2.6).

mmengine saves its message hub (``HistoryBuffer``) and numpy arrays and scalars in ``meta``. Instead of
turning the protection off, these known classes are allow-listed for every load. ``HistoryBuffer``
also pickles its statistics methods through ``getattr``; that one is allowed only while ``R2ORunner``
resumes from a checkpoint (see ``runner.py``), never globally.
"""

from __future__ import annotations

import codecs

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

_np_core = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed numpy.core

MMENGINE_CLASSES = [
    HistoryBuffer,
    np.ndarray,
    np.dtype,
    _np_core.multiarray._reconstruct,
    _np_core.multiarray.scalar,
    codecs.encode,
    *{type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_, np.uint8)},
]


def allow_mmengine_checkpoints() -> None:
    torch.serialization.add_safe_globals(MMENGINE_CLASSES)


def resume_globals() -> list:
    """What a resume additionally needs: HistoryBuffer's ``statistics_methods`` are ``getattr`` calls."""
    return [*MMENGINE_CLASSES, getattr]
