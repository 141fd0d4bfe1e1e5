"""The on-disk format of one region-prior cache entry: a SLIC label map, compact and versioned.

A label map is piecewise constant (about 100 regions on 224² pixels), so it compresses very well:
on real photographs an entry takes ~3 KB instead of the 100 KB of an int16 ``.npy``
(``benchmarks/region_cache.py`` measures it; zlib beat PNG in size and decoding time there).

Format 2 (written here; the file name ends in ``.r2osp``): a 12-byte little-endian header, then the
label map in C order, zlib-compressed (level 9; zlib's Adler-32 checksum catches corruption):

    offset 0  4 bytes  magic b"R2OS"
    offset 4  uint8    format version (2)
    offset 5  uint8    dtype code: 1 = uint8 (up to 256 segments), 2 = uint16 (up to 65,536)
    offset 6  uint16   height
    offset 8  uint16   width
    offset 10 uint16   reserved (0)

Format 1 (earlier versions): one int16 ``.npy`` per entry, read by ``read_npy_labels`` so that an old
cache is converted as it is read instead of being recomputed.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

MAGIC = b"R2OS"
FORMAT_VERSION = 2
SUFFIX = ".r2osp"
LEGACY_SUFFIX = ".npy"
HEADER = struct.Struct("<4sBBHHH")
DTYPES = {1: np.dtype(np.uint8), 2: np.dtype("<u2")}
ZLIB_LEVEL = 9


class EntryError(ValueError):
    """A cache entry cannot be decoded (truncated, corrupt, foreign, or written by a newer r2o)."""


def _dtype_code(num_labels: int) -> int:
    if num_labels <= 256:
        return 1
    if num_labels <= 65536:
        return 2
    raise EntryError(f"{num_labels} segments do not fit the cache format (at most 65,536)")


def encode_labels(labels: np.ndarray) -> bytes:
    """int[H,W] segment ids 0..S-1 → the bytes of a format-2 entry (uint8 when S ≤ 256, else uint16)."""
    if labels.ndim != 2 or labels.size == 0:
        raise EntryError(f"a label map must be a non-empty 2-D array, got shape {labels.shape}")
    if labels.min() < 0:
        raise EntryError("segment ids must be >= 0")
    code = _dtype_code(int(labels.max()) + 1)
    h, w = labels.shape
    payload = np.ascontiguousarray(labels, dtype=DTYPES[code]).tobytes()
    return HEADER.pack(MAGIC, FORMAT_VERSION, code, h, w, 0) + zlib.compress(payload, ZLIB_LEVEL)


def decode_labels(blob: bytes) -> np.ndarray:
    """The bytes of a format-2 entry → int64[H,W] segment ids. Raises EntryError when they are not one."""
    if len(blob) < HEADER.size:
        raise EntryError(f"{len(blob)} bytes: shorter than the {HEADER.size}-byte header")
    magic, version, code, h, w, _ = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise EntryError(f"not a region cache entry (magic {magic!r}, expected {MAGIC!r})")
    if version > FORMAT_VERSION:
        raise EntryError(f"format {version} was written by a newer r2o (this one reads up to {FORMAT_VERSION})")
    if version != FORMAT_VERSION or code not in DTYPES:
        raise EntryError(f"unknown format {version} / dtype code {code}")
    try:
        payload = zlib.decompress(memoryview(blob)[HEADER.size :])
    except zlib.error as exc:
        raise EntryError(f"corrupt payload ({exc})") from None
    dtype = DTYPES[code]
    if len(payload) != h * w * dtype.itemsize:
        raise EntryError(f"payload of {len(payload)} bytes does not hold {h}x{w} {dtype}")
    return np.frombuffer(payload, dtype=dtype).reshape(h, w).astype(np.int64)


def read_npy_labels(path: str) -> np.ndarray:
    """A format-1 entry (int16 ``.npy``) → int64[H,W]. Raises EntryError (or OSError) when unusable."""
    try:
        labels = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as exc:
        raise EntryError(f"unreadable .npy ({exc})") from None
    if labels.ndim != 2 or labels.dtype != np.int16 or labels.size == 0 or labels.min() < 0:
        raise EntryError(f"unexpected .npy content: shape {labels.shape}, dtype {labels.dtype}")
    return labels.astype(np.int64)
