"""Which items of a sorted listing an evaluation uses when it is capped (``eval.max_images``,
``eval.knn_max_images``): evenly spaced ones, so that a capped set still spans every class folder or
image source of the listing."""

from __future__ import annotations


def evenly_spaced(n: int, limit: int) -> list[int]:
    """``limit`` indices spread evenly over range(n) (all of them when limit is 0 or >= n)."""
    if limit <= 0 or limit >= n:
        return list(range(n))
    return [i * n // limit for i in range(limit)]
