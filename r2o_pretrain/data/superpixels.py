"""The region prior: SLIC superpixels of the raw view, cached on disk.

The raw view is a deterministic function of the file, so its SLIC label map is computed once per
(file identity, parameters) and stored as a small ``.npy``; a later epoch reads it back instead of
running SLIC again (the official loader recomputes it for every sample).
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
    slic_input: str = "uint8"  # uint8 | normalized (see slic_labels)
    hits: int = 0
    misses: int = 0
    repaired: int = 0

    def __post_init__(self) -> None:
        if self.directory:
            self.directory = os.path.expanduser(self.directory)

    def key(self, path: str, size: int) -> str:
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
        return hashlib.sha1(ident.encode()).hexdigest()

    def entry(self, path: str, size: int) -> Path:
        k = self.key(path, size)
        return Path(self.directory) / k[:2] / f"{k}.npy"

    def read(self, path: str, size: int) -> np.ndarray | None:
        """The cached int64[size,size] labels of ``path``'s raw view, or None (no entry, or a corrupt one).

        Needs no decoded image, so a warm cache can be checked without reading the picture.
        """
        if not self.directory:
            return None
        entry = self.entry(path, size)
        if not entry.exists():
            return None
        try:
            labels = np.load(entry, allow_pickle=False)
            if labels.shape == (size, size) and labels.dtype == np.int16 and labels.min() >= 0:
                self.hits += 1
                return labels.astype(np.int64)
            raise ValueError(f"shape {labels.shape} dtype {labels.dtype}")
        except (OSError, ValueError, EOFError) as exc:
            logger.warning("superpixel cache entry %s for %s is corrupt (%s): recomputing", entry, path, exc)
            self.repaired += 1
            return None

    def compute(self, path: str, rgb: np.ndarray) -> np.ndarray:
        """SLIC labels of ``rgb`` (the raw view of ``path``), written to the cache when it is on."""
        self.misses += 1
        labels = slic_labels(rgb, self.n_segments, self.compactness, self.slic_input)
        if self.directory:
            self._write(self.entry(path, rgb.shape[0]), labels.astype(np.int16))
        return labels

    def labels_for(self, path: str, rgb: np.ndarray) -> np.ndarray:
        """int64[R,R] labels of ``rgb`` (the raw view of ``path``): from the cache, else computed and cached."""
        cached = self.read(path, rgb.shape[0])
        return cached if cached is not None else self.compute(path, rgb)

    @staticmethod
    def _write(entry: Path, labels: np.ndarray) -> None:
        """Atomic: a reader sees the old entry or the whole new one, never half a file."""
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.save(f, labels, allow_pickle=False)
            os.replace(tmp, entry)
        except OSError as exc:  # a read-only or full cache must not stop training
            logger.warning("cannot write superpixel cache entry %s: %s", entry, exc)
