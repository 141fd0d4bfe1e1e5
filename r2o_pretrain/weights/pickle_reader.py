"""Reading plain pickles of weights (detectron2's ``.pkl``) without ever running code from them.

A detectron2 weights file is ``{"model": {name: numpy array}, "__author__": ..., "matching_heuristics": ...}``.
Unpickling it needs only numpy's array and scalar reconstruction and ``OrderedDict``; a pickle can call
any importable function while it loads, so ``WeightsUnpickler`` resolves exactly those globals and refuses
every other one at the moment the pickle names it — before any of the file's objects are built.
"""

from __future__ import annotations

import _compat_pickle
import collections
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

_np_core = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed numpy.core (1.x files say core)

# Every global a weights pickle may name, with what it resolves to. Nothing here can reach the file
# system, the network, a shell or an import of the pickle's choosing:
#   _reconstruct(ndarray, shape, dtype) + ndarray.__setstate__: arrays, pickle protocols 0-4
#   _frombuffer(bytes, dtype, shape, order): arrays, pickle protocol 5 (Python 3.14's default)
#   scalar(dtype, bytes): numpy scalars (e.g. an np.int64 next to the arrays)
#   dtype(str, align, copy) + dtype.__setstate__: the arrays' element types
#   _codecs.encode(str, "latin1"): how protocol <= 2 pickles written by Python 3 store bytes
# Python 2 module names (``__builtin__``, ...) are mapped to Python 3 ones as pickle itself does.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("_codecs").encode,
    ("codecs", "encode"): __import__("codecs").encode,
    ("builtins", "bytes"): bytes,  # with _codecs.encode: bytes in protocol 0-1 pickles
}
for _module in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS[(f"{_module}.multiarray", "_reconstruct")] = _np_core.multiarray._reconstruct
    _ALLOWED_GLOBALS[(f"{_module}.multiarray", "scalar")] = _np_core.multiarray.scalar
    _ALLOWED_GLOBALS[(f"{_module}.numeric", "_frombuffer")] = _np_core.numeric._frombuffer


def _python3_name(module: str, name: str) -> tuple[str, str]:
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global that weights never need; it was refused before anything of it ran."""

    def __init__(self, path: str, needed: str) -> None:
        self.path = path
        self.needed = needed  # "the global 'posix.system'", ...
        super().__init__(
            f"{path} is a pickle that needs {needed}, which a weights file never needs (only numpy arrays, "
            "numbers, strings, lists and dicts): unpickling it could run code, so it was not loaded"
        )


class WeightsUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals of numpy arrays and ``OrderedDict``."""

    def __init__(self, file, source: str, **kwargs) -> None:
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        module, name = _python3_name(module, name)
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(self.source, f"the global '{module}.{name}'") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(self.source, f"a persistent id {str(pid)[:80]!r}")


def read_weights_pickle(path: str | os.PathLike) -> Any:
    """The object of a plain pickle of weights (e.g. a detectron2 ``.pkl``), never running code.

    Raises ``UnsafePickleError`` (naming the file and the global) for anything beyond numpy arrays,
    numpy scalars, ``OrderedDict`` and Python's builtin containers, and ``pickle.UnpicklingError`` /
    ``EOFError`` for a file that is not a pickle. Python 2 pickles are read with ``encoding="latin1"``
    as detectron2 does.
    """
    path = Path(path)
    with open(path, "rb") as f:
        return WeightsUnpickler(f, str(path), encoding="latin1").load()
