"""Let mmengine's own checkpoints load under torch's ``weights_only=True`` default (torch >= 2.6).

mmengine saves its message hub (``HistoryBuffer``) and numpy arrays and scalars in ``meta``. Instead of
turning the protection off, these known classes are allow-listed for every load (``mim test``,
``load_from``, ``--resume``, mmseg's ``init_model``). ``HistoryBuffer`` also stores its statistics methods,
which pickle (protocol 2) writes as ``getattr(HistoryBuffer, "mean")``. ``getattr`` itself is never
allow-listed: the name ``builtins.getattr`` is bound to :func:`history_buffer_statistic`, which returns
only those methods of ``HistoryBuffer`` and refuses everything else, so a file cannot reach any other
attribute or run code. Which file is trusted is never decided by where it lies.
"""

from __future__ import annotations

import codecs
import pickle

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

# HistoryBuffer's own statistics (mmengine registers these four in _set_default_statistics)
HISTORY_BUFFER_STATISTICS = ("min", "max", "current", "mean")


def history_buffer_statistic(owner: object, name: str):
    """What ``getattr(owner, name)`` in a checkpoint may yield: a statistics method of ``HistoryBuffer``, nothing else."""
    if owner is HistoryBuffer and (name in HISTORY_BUFFER_STATISTICS or name in HistoryBuffer._statistics_methods):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f"the checkpoint asks for getattr({owner!r}, {name!r}); only HistoryBuffer's statistics methods are "
        "allowed under weights_only loading (a file written by mmengine needs nothing else)."
    )


MMENGINE_GLOBALS = [*MMENGINE_CLASSES, (history_buffer_statistic, "builtins.getattr")]


def allow_mmengine_checkpoints() -> None:
    torch.serialization.add_safe_globals(MMENGINE_GLOBALS)
