"""``R2ORunner``: mmengine's Runner whose checkpoint and dataset-file errors name the file and the way out.

Configs select it with ``runner_type = "R2ORunner"``. mmengine's own checkpoints load under torch's
``weights_only=True`` for ``--resume``, ``load_from`` and ``mim test`` alike, through the allow-list that
importing ``r2o_mmseg`` installs (``safe_globals.py``). Each dataset's files are checked when its dataloader
is built (``data_files.py``: a missing VOC-aug ``aug.txt`` names SBD and configs/r2o_fcn_voc2012.py);
everything else is mmengine's Runner.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator

from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from .data_files import check_dataset_files


@contextlib.contextmanager
def _naming(filename: str, what: str) -> Iterator[None]:
    try:
        yield
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise pickle.UnpicklingError(
            f"{what} {filename}: refused under weights_only loading ({first}). mmengine and r2o checkpoints "
            "load as they are; a file that needs more can run code when unpickled: load only files you trust, "
            "and re-save their 'state_dict' plainly."
        ) from exc


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
