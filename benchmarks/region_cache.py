#!/usr/bin/env python
"""Region (SLIC) cache entries on real photographs: bytes per entry and read time, earlier .npy vs compact.

  python benchmarks/region_cache.py          (or: python benchmarks/run.py --only cache)

The photographs are scikit-image's bundled ones (``skimage.data``: 17 photographs), each used whole
and as 3 random crops (scale 0.25–1), all resized to the 224² raw view: 68 entries of SLIC with 100
segments. Read times go through the real cache (stat of the image, key, file read, decode to int64),
files in the page cache, on the same files side by side (interleaved medians). Besides the format the
cache writes (zlib level 9), the candidates that were considered are measured in memory.
"""

from __future__ import annotations

import io
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from common import interleaved_median_times, table
from PIL import Image

from r2o_pretrain.data.region_cache import decode_labels, encode_labels
from r2o_pretrain.data.superpixels import SuperpixelCache, slic_labels

ROOT = Path(__file__).resolve().parents[1]

IMAGENET_TRAIN = 1_281_167
PHOTOS = (
    "astronaut brick camera cat chelsea clock coffee coins grass gravel hubble_deep_field "
    "immunohistochemistry moon retina rocket"
).split()


def photographs() -> list[np.ndarray]:
    """uint8[H,W,3] photographs bundled with scikit-image (grey ones as 3 equal channels)."""
    from skimage import data as skdata

    images = [getattr(skdata, name)() for name in PHOTOS] + list(skdata.stereo_motorcycle()[:2])
    return [np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3] for a in images]


def raw_views(size: int = 224, crops: int = 3, seed: int = 0) -> list[np.ndarray]:
    """Each photograph whole and as ``crops`` random crops (area 25–100 %), resized to size² (bicubic)."""
    rng = np.random.default_rng(seed)
    views = []
    for a in photographs():
        h, w = a.shape[:2]
        boxes = [(0, 0, h, w)]
        for _ in range(crops):
            s = np.sqrt(rng.uniform(0.25, 1.0))
            ch, cw = int(h * s), int(w * s)
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            boxes.append((y, x, ch, cw))
        for y, x, ch, cw in boxes:
            crop = Image.fromarray(a[y : y + ch, x : x + cw])
            views.append(np.asarray(crop.resize((size, size), Image.BICUBIC)))
    return views


def _npy(labels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, labels.astype(np.int16), allow_pickle=False)
    return buf.getvalue()


def _png_pil(labels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(labels.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _png_cv2(labels: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".png", labels.astype(np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()


def _decode_png_cv2(blob: bytes) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED).astype(np.int64)


CANDIDATES = {  # name → (encode, decode to int64)
    "int16 .npy (earlier format)": (_npy, lambda b: np.load(io.BytesIO(b)).astype(np.int64)),
    "uint8 + zlib level 1": (
        lambda a: zlib.compress(a.astype(np.uint8).tobytes(), 1),
        lambda b: np.frombuffer(zlib.decompress(b), np.uint8).astype(np.int64),
    ),
    "uint8 + zlib level 9 (written)": (encode_labels, decode_labels),
    "uint8 PNG (PIL, level 6)": (_png_pil, lambda b: np.asarray(Image.open(io.BytesIO(b))).astype(np.int64)),
    "uint8 PNG (cv2, level 9)": (_png_cv2, _decode_png_cv2),
}


def measure(size: int = 224, segments: int = 100, repeats: int = 7) -> dict:
    views = raw_views(size)
    labels = [slic_labels(v, segments) for v in views]
    n = len(labels)
    out: dict = {"entries": n, "max_segments": int(max(a.max() for a in labels)) + 1, "candidates": {}}
    blobs = {name: [encode(a) for a in labels] for name, (encode, _) in CANDIDATES.items()}
    for name, (_, decode) in CANDIDATES.items():  # lossless
        assert all(np.array_equal(decode(b).reshape(a.shape), a) for a, b in zip(labels, blobs[name])), name

    def decoding(name):
        decode = CANDIDATES[name][1]
        return lambda: [decode(b) for b in blobs[name]]

    times = interleaved_median_times({name: decoding(name) for name in CANDIDATES}, repeats)
    for name in CANDIDATES:
        sizes = np.array([len(b) for b in blobs[name]])
        out["candidates"][name] = {
            "mean_bytes": float(sizes.mean()),
            "max_bytes": int(sizes.max()),
            "decode_s": times[name] / n,
        }

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, v in enumerate(views):
            path = Path(tmp) / "data" / f"{i:03d}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(v).save(path)
            paths.append(str(path))
        cache = SuperpixelCache(str(Path(tmp) / "cache"), segments, root=str(Path(tmp) / "data"))
        for path, a in zip(paths, labels):  # both formats on disk, for the same images
            cache._write(cache.entry(path, size), encode_labels(a))
            cache._write(cache.legacy_entry(path, size), _npy(a))

        def read_compact():
            for path in paths:
                cache.read(path, size)

        def read_npy():  # the earlier read: key, exists, np.load, checks, int64
            for path in paths:
                entry = cache.legacy_entry(path, size)
                if entry.exists():
                    a = np.load(entry, allow_pickle=False)
                    assert a.shape == (size, size) and a.dtype == np.int16 and a.min() >= 0
                    a.astype(np.int64)

        times = interleaved_median_times({"npy": read_npy, "compact": read_compact}, repeats)
        on_disk = {
            "npy": sum(p.stat().st_size for p in Path(tmp, "cache").rglob("*.npy")) / n,
            "compact": sum(p.stat().st_size for p in Path(tmp, "cache").rglob("*.r2osp")) / n,
        }
    out["read_s"] = {k: v / n for k, v in times.items()}
    out["file_bytes"] = on_disk
    return out


def run(size: int = 224, segments: int = 100) -> list[list[str]]:
    """Rows for benchmarks/run.py (--only cache)."""
    return rows(measure(size, segments), size, segments)


def rows(m: dict, size: int = 224, segments: int = 100) -> list[list[str]]:
    what = f"region cache entry, {size}² SLIC {segments} segments, {m['entries']} views of 17 photographs"
    npy, compact = m["read_s"]["npy"], m["read_s"]["compact"]
    b_npy, b_compact = m["file_bytes"]["npy"], m["file_bytes"]["compact"]
    gb = b_compact * IMAGENET_TRAIN / 1e9
    blocks = np.ceil(b_compact / 4096) * 4096 * IMAGENET_TRAIN / 1e9
    return [
        [what, "read, int16 .npy (earlier)", f"{npy * 1e6:.0f} µs, {b_npy / 1e3:.1f} KB", "1.00x (baseline)"],
        [
            what,
            "read, uint8 + zlib 9 (now)",
            f"{compact * 1e6:.0f} µs, {b_compact / 1e3:.2f} KB",
            f"{npy / compact:.2f}x faster, {b_npy / b_compact:.0f}x smaller (target <= 8 KB, no slower)",
        ],
        [
            "ImageNet-1k train (1,281,167 entries)",
            "uint8 + zlib 9 (now)",
            f"{gb:.1f} GB (~{blocks:.1f} GB in 4 KiB blocks)",
            f"int16 .npy: {b_npy * IMAGENET_TRAIN / 1e9:.0f} GB",
        ],
    ]


def main() -> int:
    m = measure()
    print(
        f"{m['entries']} entries (max {m['max_segments']} segments); decode in memory, per entry "
        "(ImageNet-1k total = mean x 1,281,167):\n"
    )
    candidates = [
        [
            name,
            f"{c['mean_bytes']:.0f}",
            f"{c['max_bytes']}",
            f"{c['decode_s'] * 1e6:.0f} µs",
            f"{c['mean_bytes'] * IMAGENET_TRAIN / 1e9:.1f} GB",
        ]
        for name, c in m["candidates"].items()
    ]
    print(table(candidates, ["format", "mean bytes", "max bytes", "decode", "ImageNet-1k"]))
    print()
    print(table(rows(m), ["measurement", "variant", "time / rate", "ratio"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
