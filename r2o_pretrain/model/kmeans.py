"""Batched k-means with k-means++ initialisation, in torch, on whatever device the features are.

Written by hand because the clustering runs inside every training step on the training device:
scikit-learn's KMeans would force a device→host copy and a CPU round-trip per step
(benchmarks/kmeans.py measures both).
"""

from __future__ import annotations

import torch


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """float[N,D] → float[k,D] initial centres (k-means++ seeding, D² sampling).

    ``generator`` must live on ``x.device`` (or be None for the global generator).
    """
    n = x.shape[0]
    first = torch.randint(n, (1,), generator=generator, device=x.device)
    centres = [x[first].squeeze(0)]
    d2 = ((x - centres[0]) ** 2).sum(-1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # every point sits on a centre already: pick uniformly among the rest
            probs = torch.ones_like(d2)
        else:
            probs = d2 / total
        idx = torch.multinomial(probs, 1, generator=generator)
        c = x[idx].squeeze(0)
        centres.append(c)
        d2 = torch.minimum(d2, ((x - c) ** 2).sum(-1))
    return torch.stack(centres)


def kmeans(
    x: torch.Tensor, k: int, iters: int = 10, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means. x float[N,D] → (assignments int64[N] in [0, k'), centres float[k',D]).

    ``k' = min(k, N)``. Empty clusters keep their previous centre.
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans needs a non-empty [N,D] tensor, got shape {tuple(x.shape)}")
    x = x.float()
    k = min(k, x.shape[0])
    centres = kmeans_plus_plus(x, k, generator)
    assign = torch.cdist(x, centres).argmin(1)
    for _ in range(iters):
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
        new_assign = torch.cdist(x, centres).argmin(1)
        if torch.equal(new_assign, assign):
            break
        assign = new_assign
    return assign, centres
