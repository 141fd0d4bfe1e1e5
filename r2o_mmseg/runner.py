"""``R2ORunner``: mmengine's Runner whose checkpoint and dataset-file errors name the file and the way out.

A file that is no readable checkpoint at all (text, random bytes, a truncated copy) is a ConversionError
naming it, as in every other reader of this project (``r2o_pretrain.weights.read_weights_file`` says why).

Configs select it with ``runner_type = "R2ORunner"``. mmengine's own checkpoints load under torch's
``weights_only=True`` for ``--resume``, ``load_from`` and ``mim test`` alike, through the allow-list that
importing ``r2o_mmseg`` installs (``safe_globals.py``). Each dataset's files are checked when its dataloader
is built (``data_files.py``: a missing VOC-aug ``aug.txt`` names SBD and configs/r2o_fcn_voc2012.py);
everything else is mmengine's Runner.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import pickle
from collections.abc import Iterator

from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from r2o_pretrain.weights import ConversionError, read_weights_file

from .data_files import check_dataset_files


def _unreadable_file_problem(filename: str) -> str | None:
    """Why a local ``filename`` is not a readable checkpoint (r2o's reader, weights only); None when it is one
    or is not a local file (a URL: mmengine's own error stands)."""
    if not os.path.isfile(filename):
        return None
    try:
        read_weights_file(filename)
    except ConversionError as exc:
        return str(exc)
    return None


_NAMING = contextvars.ContextVar("r2o_mmseg_naming", default=False)


@contextlib.contextmanager
def _naming(filename: str, what: str) -> Iterator[None]:
    """Errors of reading ``filename`` raised again naming it as ``what``; the outermost one names it (mmengine's
    ``resume`` reads through ``load_checkpoint``: one prefix, ``--resume``'s)."""
    if _NAMING.get():
        yield
        return
    token = _NAMING.set(True)
    try:
        yield
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise pickle.UnpicklingError(
            f"{what} {filename}: refused under weights_only loading ({first}). mmengine and r2o checkpoints "
            "load as they are; a file that needs more can run code when unpickled: load only files you trust, "
            "and re-save their 'state_dict' plainly."
        ) from exc
    except Exception as exc:  # a text file, random bytes, a truncated copy: torch raises any type for them
        problem = None if isinstance(exc, ConversionError) else _unreadable_file_problem(filename)
        if problem is None:
            raise
        raise ConversionError(f"{what} {problem}") from exc
    finally:
        _NAMING.reset(token)


class R2ORunner(Runner):
    def load_checkpoint(self, filename: str, *args, **kwargs):
        with _naming(filename, "load_from / --checkpoint"):
            return super().load_checkpoint(filename, *args, **kwargs)

    def resume(self, filename: str, *args, **kwargs) -> None:
        with _naming(filename, "--resume"):
            super().resume(filename, *args, **kwargs)

    @staticmethod
    def build_dataloader(dataloader, *args, **kwargs):
        if isinstance(dataloader, dict) and isinstance(dataloader.get("dataset"), dict):
            check_dataset_files(dataloader["dataset"])
        return Runner.build_dataloader(dataloader, *args, **kwargs)


def register() -> None:
    existing = RUNNERS.module_dict.get("R2ORunner")
    if existing is None:
        RUNNERS.register_module(name="R2ORunner", module=R2ORunner)
    elif existing.__module__ != R2ORunner.__module__:
        raise KeyError(f"another runner is already registered as R2ORunner in mmseg's RUNNERS: {existing}")
