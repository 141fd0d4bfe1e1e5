"""What other libraries' own checkpoints name beyond tensors, allow-listed for torch's ``weights_only`` loading.

mmengine's checkpoints (an mmseg runner's ``iter_N.pth`` / ``epoch_N.pth``, mmseg's model zoo files) hold
its message hub (``HistoryBuffer`` objects: numpy arrays plus the buffer's statistics methods, which pickle
protocol 2 writes as ``getattr(HistoryBuffer, "mean")``) and numpy scalars in ``meta``. detectron2's own
checkpoints (``model_final.pth``: model, iteration, trainer/optimizer/scheduler state) need nothing beyond
torch's own weights-only globals (checked on real files in tests/test_weights_security.py).

One list, used by ``files.read_weights_file`` (tools/convert.py, tools/eval_unsup_seg.py, both plugins'
backbone loaders) and installed by ``r2o_mmseg`` for mmengine's own loaders (``mim test``, ``load_from``,
``--resume``). r2o_pretrain does not depend on mmengine: its class is imported only when a file names it
(``mmengine_checkpoint_globals``), and a missing mmengine is a clear refusal.

``getattr`` itself is never allow-listed: the name ``builtins.getattr`` is bound to
``history_buffer_statistic``, which returns only ``HistoryBuffer``'s statistics methods and refuses
everything else, so a file cannot reach any other attribute or run code.
"""

from __future__ import annotations

import codecs
import pickle
from typing import Any

import numpy as np

_np_core = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed numpy.core

# numpy arrays, scalars and dtypes (mmengine's HistoryBuffer data, numpy scalars in its meta)
NUMPY_GLOBALS: list[Any] = [
    np.ndarray,
    np.dtype,
    _np_core.multiarray._reconstruct,
    _np_core.multiarray.scalar,
    codecs.encode,  # how protocol <= 2 pickles written by Python 3 store bytes
    *(type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_, np.uint8)),  # numpy.dtypes.*
]

MMENGINE_MODULE = "mmengine"  # a refused global of this package: retried with ``mmengine_checkpoint_globals``
HISTORY_BUFFER = "mmengine.logging.history_buffer.HistoryBuffer"
# HistoryBuffer's own statistics (mmengine registers these four in _set_default_statistics)
HISTORY_BUFFER_STATISTICS = ("min", "max", "current", "mean")


class LibraryMissingError(ImportError):
    """A checkpoint names a class of a library that is not installed here."""


def _history_buffer() -> type:
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
    except ImportError as exc:
        raise LibraryMissingError(
            f"it is an mmengine checkpoint (it holds '{HISTORY_BUFFER}', the runner's message hub), and mmengine is "
            f"not installed here ({exc}): install mmengine (requirements/mmseg.txt) to read it"
        ) from exc
    return HistoryBuffer


def history_buffer_statistic(owner: object, name: str) -> Any:
    """What ``getattr(owner, name)`` in a checkpoint may yield: a statistics method of ``HistoryBuffer``,
    nothing else (raises ``pickle.UnpicklingError``)."""
    history_buffer = _history_buffer()
    if owner is history_buffer and (
        name in HISTORY_BUFFER_STATISTICS or name in getattr(history_buffer, "_statistics_methods", {})
    ):
        return getattr(history_buffer, name)
    raise pickle.UnpicklingError(
        f"the checkpoint asks for getattr({owner!r}, {name!r}); only HistoryBuffer's statistics methods are "
        "allowed under weights_only loading (a file written by mmengine needs nothing else)."
    )


def mmengine_checkpoint_globals() -> list[Any]:
    """Exactly what mmengine's checkpoints name, for ``torch.serialization.(add_)safe_globals``.

    Imports mmengine (raises ``LibraryMissingError`` when it is not installed)."""
    return [_history_buffer(), *NUMPY_GLOBALS, (history_buffer_statistic, "builtins.getattr")]
