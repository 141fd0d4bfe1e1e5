"""Opening a weights file — a torch checkpoint or a plain pickle — without running any code from it.

torch files (zip or legacy) are read with ``torch.load(weights_only=True)``; plain pickles (detectron2's
``.pkl``: numpy arrays in dicts) with ``WeightsUnpickler``. A file that needs any other global is refused
with its name and the global's, unless the caller explicitly allows full unpickling (trusted files only).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from .errors import ConversionError
from .pickle_reader import UnsafePickleError, read_weights_pickle

logger = logging.getLogger(__name__)

ALLOW_PICKLE_HINT = (
    "If you trust this file, pass --allow-pickle (allow_pickle=True; MODEL.R2O.ALLOW_PICKLE True in detectron2)."
)
_NOT_READABLE = (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _refused_global(exc: pickle.UnpicklingError) -> str:
    """What torch's weights-only unpickler refused ("the global 'posix.system'"), from its message."""
    text = str(exc)
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return f"the global '{m.group(1)}'"
    m = re.search(r"WeightsUnpickler error: (.+)", text)
    return f"more than weights ({(m.group(1) if m else _first_line(exc))[:200]})"


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _torch_load(path: Path, weights_only: bool, safe_globals: Iterable[Any] = ()) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Detected pickle protocol 4" on foreign pickles
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=weights_only)


def _full_unpickle(path: Path, why: str) -> Any:
    """Explicit opt-in only: torch's full loader, then plain pickle (can run the file's code)."""
    logger.warning("%s: full unpickling (%s), as allowed: only load files you trust", path, why)
    try:
        return _torch_load(path, weights_only=False)
    except Exception:
        try:
            with open(path, "rb") as f:
                return pickle.load(f, encoding="latin1")
        except Exception as exc:
            raise ConversionError(f"{path} cannot be read as a checkpoint or pickle: {_first_line(exc)}") from exc


def read_weights_file(path: str | os.PathLike, allow_pickle: bool = False, safe_globals: Iterable[Any] = ()) -> Any:
    """The object stored in a torch checkpoint or a plain weights pickle, never running code from it.

    ``safe_globals``: classes or functions a torch checkpoint may additionally name (an allow-list for
    ``weights_only``, e.g. what detectron2's training checkpoints hold). ``allow_pickle`` falls back to
    full unpickling for files that need more — only for files the user trusts.
    Raises ConversionError naming the file (and the refused global) otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    safe_globals = list(safe_globals)
    try:
        return _torch_load(path, weights_only=True, safe_globals=safe_globals)
    except _NOT_READABLE as exc:
        torch_error = exc
    if _is_zip(path):  # torch's own format: its weights-only unpickler has the last word
        if not isinstance(torch_error, pickle.UnpicklingError):
            raise ConversionError(
                f"{path} is not a readable PyTorch checkpoint ({type(torch_error).__name__}: "
                f"{_first_line(torch_error)}); it may be truncated or of another kind"
            ) from torch_error
        refused = _refused_global(torch_error)
    else:  # a plain pickle (detectron2's .pkl) or torch's legacy format
        try:
            obj = read_weights_pickle(path)
            if not (isinstance(obj, int) and obj == torch.serialization.MAGIC_NUMBER):
                return obj
            refused = _refused_global(torch_error)  # torch's legacy format, refused by torch
        except UnsafePickleError as exc:
            refused = exc.needed
            torch_error = exc
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
            raise ConversionError(
                f"{path} is neither a readable PyTorch checkpoint ({_first_line(torch_error)}) nor a pickle of "
                f"weights ({type(exc).__name__}: {_first_line(exc)}); it may be truncated or of another kind"
            ) from exc
    if allow_pickle:
        return _full_unpickle(path, f"it needs {refused}")
    raise ConversionError(
        f"{path} needs {refused}, which a weights file never needs (tensors, numpy arrays, "
        f"numbers, strings, lists, dicts): unpickling it could run code, so it was not loaded. {ALLOW_PICKLE_HINT}"
    ) from torch_error
