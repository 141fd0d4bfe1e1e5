"""Let mmengine's own checkpoints load under torch's ``weights_only=True`` default (torch >= 2.6).

mmengine saves its message hub (``HistoryBuffer``) and numpy arrays and scalars in ``meta``. Instead of
turning the protection off, exactly these globals are allow-listed for every load (``mim test``,
``load_from``, ``--resume``, mmseg's ``init_model``). The list lives once in
``r2o_pretrain.weights.library_globals`` (tools/convert.py and tools/eval_unsup_seg.py read the same files
with it); ``getattr`` is never allow-listed, only bound to a guard that yields ``HistoryBuffer``'s
statistics methods. Which file is trusted is never decided by where it lies.
"""

from __future__ import annotations

import torch

from r2o_pretrain.weights.library_globals import (
    HISTORY_BUFFER_STATISTICS,
    history_buffer_statistic,
    mmengine_checkpoint_globals,
)

MMENGINE_GLOBALS = mmengine_checkpoint_globals()

__all__ = ["HISTORY_BUFFER_STATISTICS", "MMENGINE_GLOBALS", "allow_mmengine_checkpoints", "history_buffer_statistic"]


def allow_mmengine_checkpoints() -> None:
    torch.serialization.add_safe_globals(MMENGINE_GLOBALS)
