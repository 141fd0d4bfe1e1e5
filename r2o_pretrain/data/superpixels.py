"""The region prior: SLIC superpixels of the raw view, cached on disk.

The raw view is a deterministic function of the file, so its SLIC label map is computed once per
(file identity, parameters) and stored compactly (``region_cache``: ~3 KB per 224² entry); a later
epoch reads it back instead of running SLIC again (the official loader recomputes it for every sample).

The file identity is the path relative to ``data.root`` (to the list file's folder when ``data.root``
is a text file of paths), the file size and its modification time in whole seconds: machines that mount
the same data at different paths share one cache. Entries of the earlier format (int16 ``.npy`` keyed
on the absolute path) are converted when first read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage
from skimage.segmentation import slic

from .region_cache import LEGACY_SUFFIX, SUFFIX, EntryError, decode_labels, encode_labels, read_npy_labels

logger = logging.getLogger(__name__)


def slic_labels(
    rgb: np.ndarray, n_segments: int = 100, compactness: float = 10.0, slic_input: str = "uint8"
) -> np.ndarray:
    """uint8[H,W,3] → int64[H,W] segment ids 0..S-1 (skimage ``slic``, ``start_label=0``).

    ``slic_input="normalized"``: SLIC runs on the ImageNet-normalised float64 picture, as the authors'
    code does (on the raw view's normalised tensor) instead of the picture itself.
    """
    if slic_input == "normalized":
        mean, std = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])
        rgb = ((rgb.astype(np.float32) / np.float32(255) - mean) / std).astype(np.float64)
    labels = slic(rgb, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
    # Relabel to consecutive ids so that S = labels.max() + 1 is the number of segments.
    _, consecutive = np.unique(labels, return_inverse=True)
    return consecutive.reshape(labels.shape).astype(np.int64)


@dataclass
class SuperpixelCache:
    """``labels_for(path, rgb)`` returns SLIC labels, from the cache when it holds a valid entry."""

    directory: str | None
    n_segments: int = 100
    compactness: float = 10.0
    root: str | None = None  # data.root: keys hold paths relative to it (None: absolute paths)
    slic_input: str = "uint8"  # uint8 | normalized (see slic_labels)
    hits: int = 0
    misses: int = 0
    repaired: int = 0
    converted: int = 0  # entries of the earlier .npy format rewritten in the compact one

    def __post_init__(self) -> None:
        if self.directory:
            self.directory = os.path.expanduser(self.directory)
        self._base = None
        if self.root:
            root = os.path.abspath(os.path.expanduser(self.root))
            self._base = os.path.dirname(root) if os.path.isfile(root) else root

    def relative_path(self, path: str) -> str:
        """``path`` as the key sees it: relative to the data root's folder (absolute without a root)."""
        path = os.path.abspath(path)
        return os.path.relpath(path, self._base) if self._base else path

    def key(self, path: str, size: int) -> str:
        st = os.stat(path)
        ident = "|".join(
            [
                self.relative_path(path),
                str(st.st_size),
                str(int(st.st_mtime)),  # whole seconds: copies and mounts keep them (cp -p, rsync -a, NFS)
                str(size),
                str(self.n_segments),
                repr(float(self.compactness)),
                skimage.__version__,
                "slic-v1" if self.slic_input == "uint8" else f"slic-v1-{self.slic_input}",
            ]
        )
        return hashlib.sha1(ident.encode()).hexdigest()

    def entry(self, path: str, size: int) -> Path:
        k = self.key(path, size)
        return Path(self.directory) / k[:2] / f"{k}{SUFFIX}"

    def legacy_entry(self, path: str, size: int) -> Path:
        """Where the earlier format (int16 .npy, keyed on the absolute path and mtime in ns) kept ``path``."""
        st = os.stat(path)
        ident = "|".join(
            [
                os.path.abspath(path),
                str(st.st_size),
                str(st.st_mtime_ns),
                str(size),
                str(self.n_segments),
                repr(float(self.compactness)),
                skimage.__version__,
                "slic-v1" if self.slic_input == "uint8" else f"slic-v1-{self.slic_input}",
            ]
        )
        k = hashlib.sha1(ident.encode()).hexdigest()
        return Path(self.directory) / k[:2] / f"{k}{LEGACY_SUFFIX}"

    def read(self, path: str, size: int) -> np.ndarray | None:
        """The cached int64[size,size] labels of ``path``'s raw view, or None (no entry, or a corrupt one).

        Needs no decoded image, so a warm cache can be checked without reading the picture.
        """
        if not self.directory:
            return None
        entry = self.entry(path, size)
        try:
            blob = entry.read_bytes()
        except FileNotFoundError:
            return self._convert_legacy(path, size, entry)
        except OSError as exc:
            return self._corrupt(entry, path, exc)
        try:
            labels = decode_labels(blob)
        except EntryError as exc:
            return self._corrupt(entry, path, exc)
        if labels.shape != (size, size):
            return self._corrupt(entry, path, f"shape {labels.shape}, expected {(size, size)}")
        self.hits += 1
        return labels

    def compute(self, path: str, rgb: np.ndarray) -> np.ndarray:
        """SLIC labels of ``rgb`` (the raw view of ``path``), written to the cache when it is on."""
        self.misses += 1
        labels = slic_labels(rgb, self.n_segments, self.compactness, self.slic_input)
        if self.directory:
            self._write(self.entry(path, rgb.shape[0]), encode_labels(labels))
        return labels

    def labels_for(self, path: str, rgb: np.ndarray) -> np.ndarray:
        """int64[R,R] labels of ``rgb`` (the raw view of ``path``): from the cache, else computed and cached."""
        cached = self.read(path, rgb.shape[0])
        return cached if cached is not None else self.compute(path, rgb)

    def _corrupt(self, entry: Path, path: str, why: object) -> None:
        logger.warning("superpixel cache entry %s for %s is corrupt (%s): recomputing", entry, path, why)
        self.repaired += 1
        return None

    def _convert_legacy(self, path: str, size: int, entry: Path) -> np.ndarray | None:
        """An entry of the earlier format, rewritten in the compact one (and the old file removed)."""
        legacy = self.legacy_entry(path, size)
        try:
            labels = read_npy_labels(str(legacy))
        except FileNotFoundError:
            return None
        except (OSError, EntryError) as exc:
            logger.warning(
                "old-format superpixel cache entry %s for %s is unusable (%s): recomputing", legacy, path, exc
            )
            return None
        if labels.shape != (size, size):
            return None
        if self.converted == 0:
            logger.warning(
                "superpixel cache %s holds entries of the earlier .npy format: converting them to the compact "
                "format as they are read (tools/cache_superpixels.py converts them all at once)",
                self.directory,
            )
        if self._write(entry, encode_labels(labels)):
            legacy.unlink(missing_ok=True)
        self.converted += 1
        self.hits += 1
        return labels

    @staticmethod
    def _write(entry: Path, blob: bytes) -> bool:
        """Atomic: a reader sees the old entry or the whole new one, never half a file. False if not written."""
        tmp = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, entry)
            return True
        except OSError as exc:  # a read-only or full cache must not stop training
            logger.warning("cannot write superpixel cache entry %s: %s", entry, exc)
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
            return False
