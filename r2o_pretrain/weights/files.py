"""Opening a weights file — a torch checkpoint or a plain pickle — without running any code from it.

torch files (zip or legacy) are read with ``torch.load(weights_only=True)``; plain pickles (detectron2's
``.pkl``: numpy arrays in dicts) with ``WeightsUnpickler``. Other libraries' own checkpoints (mmengine's
message hub, numpy scalars) are read with exactly the globals they need (``library_globals.py``). A file
that needs any other global is refused with its name and the global's, unless the caller explicitly
allows full unpickling (trusted files only). Anything else that is not a readable weights file (text,
random bytes, a truncated zip or pickle, a directory) is a ``ConversionError`` naming the file: a pickle
reader fed arbitrary bytes can raise any exception type (``KeyError`` for an unknown memo slot,
``IndexError`` for an empty stack, ...), so every ``Exception`` of the readers becomes that error.
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

from .errors import ConversionError, exception_summary
from .library_globals import MMENGINE_MODULE, NUMPY_GLOBALS, LibraryMissingError, mmengine_checkpoint_globals
from .pickle_reader import UnsafePickleError, read_weights_pickle

logger = logging.getLogger(__name__)

ALLOW_PICKLE_HINT = (
    "If you trust this file, pass --allow-pickle (allow_pickle=True; MODEL.R2O.ALLOW_PICKLE True in detectron2)."
)
_UNREADABLE_HINT = "it may be truncated (a copy cut short) or not a weights file at all"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


_TORCH_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _refused_name(exc: pickle.UnpicklingError) -> str | None:
    """The global torch's weights-only unpickler refused ("posix.system"), from its message."""
    m = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(exc))
    return m.group(1) if m else None


def _refused_global(exc: pickle.UnpicklingError) -> str:
    """What torch's weights-only unpickler refused ("the global 'posix.system'"), from its message."""
    name = _refused_name(exc)
    if name:
        return f"the global '{name}'"
    text = re.sub(r"^.*?WeightsUnpickler error:", "", str(exc), flags=re.S)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(_TORCH_BOILERPLATE)]
    return f"more than weights ({(reasons or lines or [type(exc).__name__])[0][:300]})"


def _is_zip(path: Path) -> bool:
    """torch's zip format (also a zip cut after its first bytes)."""
    with open(path, "rb") as f:
        return f.read(2) == b"PK"


def _torch_load(path: Path, weights_only: bool, safe_globals: Iterable[Any] = ()) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Detected pickle protocol 4" on foreign pickles
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=weights_only)


def _library_globals(refused: str | None, tried: set[str]) -> tuple[str, list[Any]] | None:
    """(group, globals) to read a file again with, when ``refused`` is a global of another library's own
    checkpoints (numpy's, mmengine's) not tried yet; None otherwise."""
    if refused is None:
        return None
    if "numpy" not in tried and (refused.split(".")[0] == "numpy" or refused in ("_codecs.encode", "codecs.encode")):
        return "numpy", NUMPY_GLOBALS
    if MMENGINE_MODULE not in tried and refused.split(".")[0] == MMENGINE_MODULE:
        return MMENGINE_MODULE, mmengine_checkpoint_globals()  # LibraryMissingError without mmengine
    return None


def _torch_load_weights_only(path: Path, safe_globals: list[Any], zipped: bool) -> Any:
    """``torch.load(weights_only=True)`` with ``safe_globals``; a zip (torch's format, mmengine's files) that
    names numpy's or mmengine's checkpoint globals is read again with exactly those added. (A plain pickle,
    e.g. detectron2's .pkl of numpy arrays, is not retried: torch would parse all of it only to find no
    torch magic number; ``read_weights_pickle`` reads it.)"""
    tried: set[str] = set() if zipped else {"numpy", MMENGINE_MODULE}
    extra: list[Any] = []
    while True:
        try:
            return _torch_load(path, weights_only=True, safe_globals=[*safe_globals, *extra])
        except pickle.UnpicklingError as exc:
            more = _library_globals(_refused_name(exc), tried)
            if more is None:
                raise
            tried.add(more[0])
            extra += more[1]


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
    ``weights_only``). mmengine's own checkpoints (message hub, numpy scalars) are read with the globals
    of ``library_globals.py``. ``allow_pickle`` falls back to full unpickling for files that need more —
    only for files the user trusts.
    Raises ConversionError naming the file (and the refused global) for every file it does not return.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        zipped = _is_zip(path)
    except OSError as exc:
        raise ConversionError(f"{path} cannot be opened: {exc}") from exc
    safe_globals = list(safe_globals)
    try:
        return _torch_load_weights_only(path, safe_globals, zipped)
    except LibraryMissingError as exc:
        if allow_pickle:
            return _full_unpickle(path, str(exc))
        raise ConversionError(f"{path}: {exc}. {ALLOW_PICKLE_HINT}") from exc
    except Exception as exc:  # what torch's readers raise on bytes that are not a checkpoint: any type
        torch_error: Exception = exc
    if zipped:  # torch's own format: its weights-only unpickler has the last word
        if not isinstance(torch_error, pickle.UnpicklingError):
            raise ConversionError(
                f"{path} is not a readable PyTorch checkpoint ({exception_summary(torch_error)}); {_UNREADABLE_HINT}"
            ) from torch_error
        refused = _refused_global(torch_error)
    else:  # a plain pickle (detectron2's .pkl) or torch's legacy format
        try:
            obj = read_weights_pickle(path)
            if not (isinstance(obj, int) and obj == torch.serialization.MAGIC_NUMBER):
                return obj
            if not isinstance(torch_error, pickle.UnpicklingError):  # a legacy torch file torch cannot read
                raise ConversionError(
                    f"{path} is not a readable PyTorch checkpoint (legacy format; "
                    f"{exception_summary(torch_error)}); {_UNREADABLE_HINT}"
                ) from torch_error
            refused = _refused_global(torch_error)  # torch's legacy format, refused by torch
        except UnsafePickleError as exc:
            refused = exc.needed
            torch_error = exc
        except ConversionError:
            raise
        except Exception as exc:  # the pickle machine on arbitrary bytes: KeyError, IndexError, EOFError, ...
            raise ConversionError(
                f"{path} is neither a readable PyTorch checkpoint ({exception_summary(torch_error)}) nor a pickle of "
                f"weights ({exception_summary(exc)}); {_UNREADABLE_HINT}"
            ) from exc
    if allow_pickle:
        return _full_unpickle(path, f"it needs {refused}")
    raise ConversionError(
        f"{path} needs {refused}, which a weights file never needs (tensors, numpy arrays, "
        f"numbers, strings, lists, dicts): unpickling it could run code, so it was not loaded. {ALLOW_PICKLE_HINT}"
    ) from torch_error
