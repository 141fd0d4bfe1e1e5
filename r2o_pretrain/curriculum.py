"""The region-to-object curriculum: the number of clusters K as a function of the epoch.

K above ``superpixel_only_above`` (128) means "no refinement: the superpixels are the masks".
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def cosine_k_schedule(epoch: float, total: float, k_start: int, k_end: int) -> int:
    """``int(k_end + (k_start - k_end) * (1 + cos(pi * e / T)) / 2)``, e clipped to [0, T]."""
    t = min(max(epoch / total, 0.0), 1.0) if total > 0 else 1.0
    return int(k_end + (k_start - k_end) * (1 + math.cos(math.pi * t)) / 2)


def linear_k_schedule(epoch: float, total: float, k_start: int, k_end: int) -> int:
    """``int(k_start + (k_end - k_start) * e / T)``, e clipped to [0, T]."""
    t = min(max(epoch / total, 0.0), 1.0) if total > 0 else 1.0
    return int(k_start + (k_end - k_start) * t)


def piecewise_k_schedule(epoch: float, milestones: Sequence[Sequence[int]]) -> int:
    """K of the last milestone ``[epoch_i, K_i]`` with ``epoch_i <= epoch``."""
    k = int(milestones[0][1])
    for start, value in sorted(milestones, key=lambda m: m[0]):
        if epoch >= start:
            k = int(value)
    return k


def k_at(
    epoch: float,
    schedule: str,
    total_epochs: float,
    k_start: int,
    k_end: int,
    milestones: Sequence[Sequence[int]] = (),
) -> int:
    """K for ``epoch`` under the named schedule (cosine | linear | piecewise | constant); always >= 1."""
    if schedule == "cosine":
        k = cosine_k_schedule(epoch, total_epochs, k_start, k_end)
    elif schedule == "linear":
        k = linear_k_schedule(epoch, total_epochs, k_start, k_end)
    elif schedule == "piecewise":
        k = piecewise_k_schedule(epoch, milestones)
    elif schedule == "constant":
        k = k_start
    else:
        raise ValueError(f"unknown curriculum schedule '{schedule}'")
    return max(1, k)
