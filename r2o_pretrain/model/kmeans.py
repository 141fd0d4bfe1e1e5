"""Batched k-means with k-means++ initialisation, in torch, on whatever device the features are.

Written by hand because the clustering runs inside every training step on the training device:
scikit-learn's KMeans would force a device→host copy and a CPU round-trip per step
(benchmarks/kmeans.py measures both).
"""

from __future__ import annotations

import torch


def _sq_dist_to(x: torch.Tensor, x_sq: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """float[N,D], float[N], float[k,D] → float[N,k] squared distances, as one matrix product."""
    return torch.addmm((centres * centres).sum(-1)[None, :] + x_sq[:, None], x, centres.T, alpha=-2.0).clamp_min_(0)


def kmeans_plus_plus(
    x: torch.Tensor, k: int, generator: torch.Generator | None = None, x_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """float[N,D] → float[k,D] initial centres (k-means++ seeding, D² sampling).

    ``generator`` must live on ``x.device`` (or be None for the global generator); ``x_sq`` float[N]
    is ``|x|²`` if the caller has it. No host synchronisation: on a GPU the k draws queue behind the
    forward pass.
    """
    n = x.shape[0]
    if x_sq is None:
        x_sq = (x * x).sum(-1)
    first = torch.randint(n, (1,), generator=generator, device=x.device)
    centres = [x[first].squeeze(0)]
    d2 = _sq_dist_to(x, x_sq, centres[0][None])[:, 0]
    for _ in range(1, k):
        # every point on a centre already (d2 all zero): draw uniformly instead; multinomial normalises
        weights = torch.where(d2.sum() > 0, d2, torch.ones_like(d2))
        idx = torch.multinomial(weights, 1, generator=generator)
        c = x[idx].squeeze(0)
        centres.append(c)
        d2 = torch.minimum(d2, _sq_dist_to(x, x_sq, c[None])[:, 0])
    return torch.stack(centres)


def kmeans(
    x: torch.Tensor,
    k: int,
    iters: int = 200,
    generator: torch.Generator | None = None,
    until_converged: bool = True,
    check_every: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means in fp32 (also under autocast). x float[N,D] → (assignments int64[N] in [0, k'),
    centres float[k',D]), ``k' = min(k, N)``. See ``kmeans_with_iterations``."""
    assign, centres, _ = kmeans_with_iterations(x, k, iters, generator, until_converged, check_every)
    return assign, centres


def kmeans_with_iterations(
    x: torch.Tensor,
    k: int,
    iters: int = 200,
    generator: torch.Generator | None = None,
    until_converged: bool = True,
    check_every: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """k-means++ init, then Lloyd iterations: (assignments int64[N], centres float[k',D], iterations run).

    ``until_converged`` (the authors' rule): stop when the assignment no longer changes, after at most
    ``iters`` iterations; otherwise run exactly ``iters``. A repeated assignment is a fixed point, so
    testing it only every ``check_every`` iterations (default: every one on CPU, every 8 on a GPU,
    where each test is a host synchronisation) gives the same result. Empty clusters keep their
    previous centre (the authors' code gives them a NaN centre).
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans needs a non-empty [N,D] tensor, got shape {tuple(x.shape)}")
    if check_every is None:
        check_every = 1 if x.device.type == "cpu" else 8
    with torch.autocast(x.device.type, enabled=False):
        x = x.float()
        k = min(k, x.shape[0])
        x_sq = (x * x).sum(-1)
        centres = kmeans_plus_plus(x, k, generator, x_sq)
        assign = _sq_dist_to(x, x_sq, centres).argmin(1)
        done = 0
        for done in range(1, iters + 1):
            sums = torch.zeros_like(centres).index_add_(0, assign, x)
            counts = torch.bincount(assign, minlength=k).to(x.dtype)
            centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
            new_assign = _sq_dist_to(x, x_sq, centres).argmin(1)
            converged = until_converged and done % check_every == 0 and torch.equal(new_assign, assign)
            assign = new_assign
            if converged:
                break
    return assign, centres, done
