"""The files a dataset config names, checked before mmseg reads them: a missing one stops the run with its
path, the setting that names it and, for the files of a known protocol, what makes them or the config to use
instead (mmseg itself says ``Failed to load `ann_file` .../aug.txt`` and nothing more).

``R2ORunner.build_dataloader`` calls :func:`check_dataset_files` on each dataset config it builds, so a run
checks what it reads (``mim test`` does not check the training set).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

# VOC-aug (configs/r2o_fcn_voc.py): the SBD part of the authors' protocol
VOC_AUG_HINT = (
    "SegmentationClassAug/ and ImageSets/Segmentation/aug.txt are the SBD part of the VOC-aug protocol "
    "(10,582 training images): mmseg's converter makes them from SBD (docs/transfer_mmseg.md, 'Preparing the "
    "data'). With VOC2012 alone, train on its train.txt (1,464 images) with configs/r2o_fcn_voc2012.py "
    "(the same model, schedule and val set)"
)
HINTS = {"aug.txt": VOC_AUG_HINT, "SegmentationClassAug": VOC_AUG_HINT}


class DatasetFileError(FileNotFoundError):
    """A file or folder that a dataset config names is missing."""


def _is_local(path: str) -> bool:
    return "://" not in path  # s3://, http://, petrel:// are the file backends' business


def _named_paths(cfg: Mapping, where: str) -> Iterator[tuple[str, str]]:
    """(setting, path) for every ann_file / data_prefix entry of ``cfg`` and the datasets it wraps
    (ConcatDataset's ``datasets``, RepeatDataset's ``dataset``), joined with data_root as mmengine does."""
    root = cfg.get("data_root") or ""
    ann = cfg.get("ann_file")
    if isinstance(ann, str) and ann:
        yield f"{where}ann_file", os.path.join(root, ann) if root and not os.path.isabs(ann) else ann
    prefix = cfg.get("data_prefix") or {}
    if isinstance(prefix, Mapping):
        for key, value in prefix.items():
            if isinstance(value, str) and (value or root):
                yield f"{where}data_prefix.{key}", os.path.join(root, value) if root else value
    inner = cfg.get("dataset")
    if isinstance(inner, Mapping):
        yield from _named_paths(inner, f"{where}dataset.")
    for i, sub in enumerate(cfg.get("datasets") or []):
        if isinstance(sub, Mapping):
            yield from _named_paths(sub, f"{where}datasets.{i}.")


def missing_dataset_files(cfg: Mapping) -> list[tuple[str, str]]:
    """(setting, path) of every local file or folder named by dataset config ``cfg`` that does not exist."""
    return [(name, path) for name, path in _named_paths(cfg, "") if _is_local(path) and not os.path.exists(path)]


def check_dataset_files(cfg: Mapping, loader: str = "dataloader") -> None:
    """Raise :class:`DatasetFileError` naming every missing file of dataset config ``cfg`` (in ``loader``),
    with the hint of a known protocol's files."""
    missing = missing_dataset_files(cfg)
    if not missing:
        return
    lines = [f"{loader}.dataset.{name} = {path}: not found" for name, path in missing]
    hints = dict.fromkeys(HINTS[part] for _, path in missing for part in HINTS if os.path.basename(path) == part)
    raise DatasetFileError("\n".join([f"{len(missing)} missing dataset file(s):", *lines, *hints]))
