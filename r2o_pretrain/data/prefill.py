"""Fill the superpixel cache ahead of training, in parallel.

Without this, the first epoch runs SLIC for every image inside the loader (tens of ms per image per
worker), which starves a GPU; later epochs read the cache. ``prefill_superpixels`` computes the
cache entries of the raw views with a torch ``DataLoader``'s worker processes, exactly as the training
dataset would (same raw view, same cache key), so that training starts on a warm cache.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
from torch.utils.data import DataLoader, Dataset

from .dataset import PretrainDataset
from .folder import BadImageError, open_rgb


class RawViewSuperpixels(Dataset):
    """index → (status, message): ensures the cache holds the SLIC labels of that file's raw view.

    status is ``cached`` (already there), ``converted`` (an entry of the earlier .npy format rewritten in
    the compact one), ``computed`` (written now), ``repaired`` (a corrupt entry rewritten) or
    ``unreadable`` (the file is skipped; training would skip it too).
    """

    def __init__(self, dataset: PretrainDataset, indices: list[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[str, str]:
        d = self.dataset
        path = d.files[self.indices[i]]
        cache = d.superpixels
        repaired_before, converted_before = cache.repaired, cache.converted
        try:
            if cache.read(path, d.transform.raw_size) is not None:  # a warm entry: no need to decode the image
                return ("converted" if cache.converted > converted_before else "cached"), ""
        except OSError as exc:  # the file vanished or cannot be stat'ed since it was listed
            return "unreadable", f"{path}: {exc}"
        try:
            img = open_rgb(path, d.min_image_size)
        except BadImageError as exc:
            return "unreadable", str(exc)
        cache.compute(path, np.asarray(d.transform.raw_view(img), dtype=np.uint8))
        return ("repaired" if cache.repaired > repaired_before else "computed"), ""


def shard_indices(n: int, shard: int, num_shards: int) -> list[int]:
    """Every ``num_shards``-th index from ``shard``: the part of ``range(n)`` one machine fills."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, {num_shards}), got {shard}")
    return list(range(shard, n, num_shards))


def prefill_superpixels(
    dataset: PretrainDataset,
    workers: int,
    shard: int = 0,
    num_shards: int = 1,
    on_item: Callable[[str, str], None] | None = None,
) -> Counter:
    """Fill the cache for this shard of ``dataset`` with ``workers`` processes (0: in this process).

    Returns the count of each status; ``on_item(status, message)`` is called once per file (progress).
    """
    if not dataset.superpixels.directory:
        raise ValueError("the superpixel cache is disabled (data.superpixel_cache is empty): nothing to fill")
    items = RawViewSuperpixels(dataset, shard_indices(len(dataset), shard, num_shards))
    loader = DataLoader(items, batch_size=None, shuffle=False, num_workers=workers)
    counts: Counter = Counter()
    for status, message in loader:
        counts[status] += 1
        if on_item is not None:
            on_item(status, message)
    return counts
