"""Batched k-means with k-means++ initialisation, in torch, on whatever device the features are.

Seeding (``init``): ``greedy`` is the authors' (and scikit-learn's ``kmeans_plusplus``): for each new
centre draw 2 + ⌊ln K⌋ D²-weighted candidates and keep the one that lowers the inertia most;
``single`` draws one candidate per centre (the original k-means++).

Written by hand because the clustering runs inside every training step on the training device:
scikit-learn's KMeans would force a device→host copy and a CPU round-trip per step
(benchmarks/kmeans.py measures both).
"""

from __future__ import annotations

import math

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


def greedy_seeding(
    x: torch.Tensor, k: int, first: torch.Tensor, uniforms: torch.Tensor, x_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """Greedy k-means++ with given random numbers: int64[k] indices of the chosen centres in ``x``.

    x float[N,D]; first int64 scalar (the first centre); uniforms float[k-1,L] in [0, 1), one row of L
    candidate draws per further centre. Candidate j of a step is the point where the running sum of the
    current squared distances first reaches ``uniforms[j]·(their total)`` (``searchsorted``, as
    scikit-learn's and the authors' code); the candidate whose addition gives the lowest total is kept.
    """
    if x_sq is None:
        x_sq = (x * x).sum(-1)
    n = x.shape[0]
    chosen = [first.reshape(())]
    d2 = _sq_dist_to(x, x_sq, x[first].reshape(1, -1))[:, 0]
    for c in range(1, k):
        targets = uniforms[c - 1].to(d2.dtype) * d2.sum()
        cand = torch.searchsorted(torch.cumsum(d2, 0), targets).clamp_max_(n - 1)  # [L]
        d_cand = torch.minimum(d2[None, :], _sq_dist_to(x, x_sq, x[cand]).T)  # [L,N]
        best = d_cand.sum(1).argmin()
        chosen.append(cand[best])
        d2 = d_cand[best]
    return torch.stack(chosen)


def greedy_trials(k: int) -> int:
    """Candidates per centre of the greedy seeding: 2 + ⌊ln k⌋ (scikit-learn's and the authors')."""
    return 2 + int(math.log(k))


def greedy_kmeans_plus_plus(
    x: torch.Tensor, k: int, generator: torch.Generator | None = None, x_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """float[N,D] → float[k,D] initial centres by greedy k-means++ (``greedy_seeding`` with draws from
    ``generator``, which must live on ``x.device``). No host synchronisation."""
    first = torch.randint(x.shape[0], (), generator=generator, device=x.device)
    uniforms = torch.rand(max(k - 1, 0), greedy_trials(k), generator=generator, device=x.device)
    return x[greedy_seeding(x, k, first, uniforms, x_sq)]


SEEDINGS = {"greedy": greedy_kmeans_plus_plus, "single": kmeans_plus_plus}


def kmeans(
    x: torch.Tensor,
    k: int,
    iters: int = 200,
    generator: torch.Generator | None = None,
    until_converged: bool = True,
    check_every: int | None = None,
    init: str = "greedy",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means in fp32 (also under autocast). x float[N,D] → (assignments int64[N] in [0, k'),
    centres float[k',D]), ``k' = min(k, N)``. See ``kmeans_with_iterations``."""
    assign, centres, _ = kmeans_with_iterations(x, k, iters, generator, until_converged, check_every, init)
    return assign, centres


def kmeans_with_iterations(
    x: torch.Tensor,
    k: int,
    iters: int = 200,
    generator: torch.Generator | None = None,
    until_converged: bool = True,
    check_every: int | None = None,
    init: str = "greedy",
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """k-means++ init (``init``: greedy | single), then Lloyd iterations: (assignments int64[N], centres float[k',D], iterations run).

    ``until_converged`` (the authors' rule): stop when the assignment no longer changes, after at most
    ``iters`` iterations; otherwise run exactly ``iters``. A repeated assignment is a fixed point, so
    testing it only every ``check_every`` iterations (default: every one on CPU, every 8 on a GPU,
    where each test is a host synchronisation) gives the same result. Empty clusters keep their
    previous centre (the authors' code gives them a NaN centre, and ``argmin`` then sends every point
    to that cluster: docs/method.md, departure 5).
    """
    if init not in SEEDINGS:
        raise ValueError(f"k-means init must be one of {tuple(SEEDINGS)}, got '{init}'")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans needs a non-empty [N,D] tensor, got shape {tuple(x.shape)}")
    if check_every is None:
        check_every = 1 if x.device.type == "cpu" else 8
    with torch.autocast(x.device.type, enabled=False):
        x = x.float()
        k = min(k, x.shape[0])
        x_sq = (x * x).sum(-1)
        centres = SEEDINGS[init](x, k, generator, x_sq)
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
