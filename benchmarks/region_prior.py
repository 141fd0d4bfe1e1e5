"""Region prior per image: skimage ``slic`` per sample (the official loader) vs our on-disk cache."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from common import median_time
from PIL import Image

from r2o_pretrain.data.superpixels import SuperpixelCache, slic_labels


def run(n_images: int = 16, size: int = 224, segments: int = 100) -> list[list[str]]:
    from skimage import data as skdata

    base = skdata.astronaut()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths, rgbs = [], []
        for i in range(n_images):
            y, x = rng.integers(0, 200, size=2)
            rgb = np.asarray(Image.fromarray(base[y : y + 300, x : x + 300]).resize((size, size)))
            path = Path(tmp) / f"{i}.png"
            Image.fromarray(rgb).save(path)
            paths.append(str(path))
            rgbs.append(rgb)

        def official():
            for rgb in rgbs:
                slic_labels(rgb, segments)

        cache_dir = Path(tmp) / "cache"

        def miss():
            cache = SuperpixelCache(str(cache_dir / str(rng.integers(1 << 30))), segments)
            for p, rgb in zip(paths, rgbs):
                cache.labels_for(p, rgb)

        warm = SuperpixelCache(str(cache_dir / "warm"), segments)
        for p, rgb in zip(paths, rgbs):
            warm.labels_for(p, rgb)

        def hit():
            for p, rgb in zip(paths, rgbs):
                warm.labels_for(p, rgb)

        t_off = median_time(official, repeats=3) / n_images
        t_miss = median_time(miss, repeats=3) / n_images
        t_hit = median_time(hit, repeats=5) / n_images
    what = f"region prior per image, {size}px raw view, {segments} segments"
    return [
        [what, "skimage slic per sample (official)", f"{t_off * 1000:.2f} ms", "1.00x (baseline)"],
        [what, "ours, cache miss (slic + write)", f"{t_miss * 1000:.2f} ms", f"{t_off / t_miss:.2f}x faster"],
        [what, "ours, cache hit", f"{t_hit * 1000:.3f} ms", f"{t_off / t_hit:.0f}x faster (target >= 5x)"],
    ]
