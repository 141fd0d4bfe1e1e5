"""Batched k-means with k-means++ initialisation, in torch, on whatever device the features are.

Seeding (``init``): ``greedy`` is the authors' (and scikit-learn's ``kmeans_plusplus``): for each new
centre draw 2 + ⌊ln K⌋ D²-weighted candidates and keep the one that lowers the inertia most;
``single`` draws one candidate per centre (the original k-means++). Both take their random numbers
drawn beforehand (the first centre, one row of uniforms per further centre), so that the seeding is a
fixed sequence of kernels: no host synchronisation, and capturable as a CUDA graph (``kmeans_graphs``).

**Padding.** The points may be padded at the end to a fixed count (``num_points`` real rows of ``x``,
the rest ignored), which gives every step of one shape the same tensor shapes. Padding never changes a
result: a padded point has weight 0 in the D² draw (its distance is held at 0, and a draw can never
land on it), it is sent to a spare cluster ``k`` that no centre reads, and every sum over the points is
a running sum (``cumsum``), to which trailing zeros add nothing. On the CPU the padded and the unpadded
call give the same bits (tests/test_kmeans_padding.py).

**Lloyd iterations** run in blocks (``lloyd_block``): a block of ``steps`` iterations records, per
iteration, whether the assignment changed, and keeps the state of the first iteration that changed
nothing (a fixed point: further iterations would reproduce it). The host reads those flags once per
block — the clustering's only host synchronisation — and gets exactly the result and the iteration
count of checking after every iteration.

Written by hand because the clustering runs inside every training step on the training device:
scikit-learn's KMeans would force a device→host copy and a CPU round-trip per step
(benchmarks/kmeans.py measures both).
"""

from __future__ import annotations

import contextlib
import math
from typing import Protocol

import torch

GRAPH_BLOCK = 8  # Lloyd iterations per host check on a GPU (and per captured CUDA graph)


def fp32_region(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off on ``device`` (a no-op where autocast does not exist, e.g. the meta device)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def squared_distances(x: torch.Tensor, x_sq: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """float[N,D], float[N], float[k,D] → float[N,k] squared distances, as one matrix product."""
    return torch.addmm((centres * centres).sum(-1)[None, :] + x_sq[:, None], x, centres.T, alpha=-2.0).clamp_min_(0)


def _total(values: torch.Tensor) -> torch.Tensor:
    """float[...,N] → float[...]: the sum over the last dim as a running sum's last value, so that
    trailing zeros (padding) leave it unchanged to the bit (a tree-shaped ``sum`` regroups them)."""
    return torch.cumsum(values, -1)[..., -1]


def greedy_seeding(
    x: torch.Tensor,
    k: int,
    first: torch.Tensor,
    uniforms: torch.Tensor,
    x_sq: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    last: torch.Tensor | None = None,
) -> torch.Tensor:
    """Greedy k-means++ with given random numbers: int64[k] indices of the chosen centres in ``x``.

    x float[N,D]; first int64 scalar (the first centre); uniforms float[k-1,L] in [0, 1), one row of L
    candidate draws per further centre (L = 1: the original k-means++). Candidate j of a step is the
    point where the running sum of the current squared distances first reaches ``uniforms[j]·(their
    total)`` (``searchsorted``, as scikit-learn's and the authors' code); the candidate whose addition
    gives the lowest total is kept. Padding: ``valid`` bool[N] marks the real points (a prefix of
    ``x``) and ``last`` int64 scalar the index of the last one; a padded point keeps distance 0, so it
    is never drawn, and a draw past the end is clamped to ``last`` (None: every point is real).
    """
    if x_sq is None:
        x_sq = (x * x).sum(-1)
    if last is None:
        last = torch.full((), x.shape[0] - 1, dtype=torch.long, device=x.device)
    chosen = [first.reshape(1)]
    d2 = squared_distances(x, x_sq, x.index_select(0, chosen[0]))[:, 0]
    if valid is not None:
        d2 = torch.where(valid, d2, torch.zeros_like(d2))
    for c in range(1, k):
        running = torch.cumsum(d2, 0)
        targets = uniforms[c - 1].to(d2.dtype) * running[-1]
        cand = torch.minimum(torch.searchsorted(running, targets), last)  # [L]
        # a padded point's distance stays min(0, ·) = 0
        d_cand = torch.minimum(d2[None, :], squared_distances(x, x_sq, x.index_select(0, cand)).T)  # [L,N]
        best = _total(d_cand).argmin().reshape(1)
        chosen.append(cand.index_select(0, best))
        d2 = d_cand.index_select(0, best)[0]
    return torch.cat(chosen)


def greedy_trials(k: int) -> int:
    """Candidates per centre of the greedy seeding: 2 + ⌊ln k⌋ (scikit-learn's and the authors')."""
    return 2 + int(math.log(k))


SEEDING_TRIALS = {"greedy": greedy_trials, "single": lambda k: 1}


def seeding_draws(
    n: int, k: int, init: str, generator: torch.Generator | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random numbers of one seeding over ``n`` real points: (first int64 scalar in [0, n),
    uniforms float[k-1, L]), L = 2 + ⌊ln k⌋ (greedy) or 1 (single), drawn from ``generator``."""
    first = torch.randint(n, (), generator=generator, device=device)
    uniforms = torch.rand(max(k - 1, 0), SEEDING_TRIALS[init](k), generator=generator, device=device)
    return first, uniforms


def greedy_kmeans_plus_plus(
    x: torch.Tensor, k: int, generator: torch.Generator | None = None, x_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """float[N,D] → float[k,D] initial centres by greedy k-means++ (``greedy_seeding`` with draws from
    ``generator``, which must live on ``x.device``). No host synchronisation."""
    first, uniforms = seeding_draws(x.shape[0], k, "greedy", generator, x.device)
    return x[greedy_seeding(x, k, first, uniforms, x_sq)]


def kmeans_plus_plus(
    x: torch.Tensor, k: int, generator: torch.Generator | None = None, x_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """float[N,D] → float[k,D] initial centres by the original k-means++ (one D²-weighted draw per
    centre: ``greedy_seeding`` with one candidate). No host synchronisation."""
    first, uniforms = seeding_draws(x.shape[0], k, "single", generator, x.device)
    return x[greedy_seeding(x, k, first, uniforms, x_sq)]


def assign_points(
    x: torch.Tensor, x_sq: torch.Tensor, centres: torch.Tensor, valid: torch.Tensor | None
) -> torch.Tensor:
    """int64[N]: each point's nearest centre; a padded point (``valid`` False) gets the spare id k."""
    assign = squared_distances(x, x_sq, centres).argmin(1)
    if valid is None:
        return assign
    return torch.where(valid, assign, torch.full_like(assign, centres.shape[0]))


def lloyd_step(
    x: torch.Tensor, x_sq: torch.Tensor, valid: torch.Tensor | None, centres: torch.Tensor, assign: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Lloyd iteration: (centres float[k,D], assign int64[N]) → the means of the assigned points
    (an empty cluster keeps its centre) and the new assignment. Padded points (assigned the spare id k)
    are summed into a spare row that is dropped; counts are summed as floats, not ``bincount`` (which
    reads its maximum back to the host on a GPU)."""
    k = centres.shape[0]
    sums = torch.zeros(k + 1, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, assign, x)[:k]
    ones = torch.ones_like(x_sq)
    counts = torch.zeros(k + 1, dtype=x.dtype, device=x.device).index_add_(0, assign, ones)[:k]
    centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
    return centres, assign_points(x, x_sq, centres, valid)


def lloyd_block(
    x: torch.Tensor,
    x_sq: torch.Tensor,
    valid: torch.Tensor | None,
    centres: torch.Tensor,
    assign: torch.Tensor,
    steps: int,
    stop_at_fixed_point: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``steps`` Lloyd iterations without a host read: (centres, assign, changed bool[steps]).

    ``changed[i]``: iteration i gave a different assignment than its input. With
    ``stop_at_fixed_point`` the state of the first iteration that changed nothing is kept to the end of
    the block (what stopping there would have returned).
    """
    settled = torch.zeros((), dtype=torch.bool, device=x.device)
    changed = []
    for _ in range(steps):
        new_centres, new_assign = lloyd_step(x, x_sq, valid, centres, assign)
        moved = (new_assign != assign).any()
        if stop_at_fixed_point:
            centres = torch.where(settled, centres, new_centres)
            assign = torch.where(settled, assign, new_assign)
            settled = settled | ~moved
        else:
            centres, assign = new_centres, new_assign
        changed.append(moved)
    return centres, assign, torch.stack(changed)


class KMeansSteps(Protocol):
    """The two pieces of a clustering over fixed points: run eagerly (``EagerSteps``) or replayed as
    CUDA graphs (``kmeans_graphs.GraphSteps``)."""

    def seeding(self, k: int, first: torch.Tensor, uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (centres float[k,D], assignment int64[N])."""

    def block(
        self, centres: torch.Tensor, assign: torch.Tensor, steps: int, stop_at_fixed_point: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """→ ``lloyd_block``'s (centres, assign, changed)."""


class EagerSteps:
    """``KMeansSteps`` as plain kernel launches over points x float[N,D] (``valid``/``last``: padding)."""

    def __init__(
        self, x: torch.Tensor, x_sq: torch.Tensor, valid: torch.Tensor | None, last: torch.Tensor | None
    ) -> None:
        self.x, self.x_sq, self.valid, self.last = x, x_sq, valid, last

    def seeding(self, k: int, first: torch.Tensor, uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = greedy_seeding(self.x, k, first, uniforms, self.x_sq, self.valid, self.last)
        centres = self.x.index_select(0, chosen)
        return centres, assign_points(self.x, self.x_sq, centres, self.valid)

    def block(
        self, centres: torch.Tensor, assign: torch.Tensor, steps: int, stop_at_fixed_point: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return lloyd_block(self.x, self.x_sq, self.valid, centres, assign, steps, stop_at_fixed_point)


def run_lloyd(
    steps: KMeansSteps,
    centres: torch.Tensor,
    assign: torch.Tensor,
    iters: int,
    until_converged: bool,
    block: int,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Lloyd iterations in blocks of ``block``, one host read of the ``changed`` flags per block (none
    without ``until_converged``): (centres, assign, iterations run). The result and the count are those
    of checking after every iteration (``lloyd_block`` keeps the fixed point)."""
    done = 0
    while done < iters:
        n = min(block, iters - done)
        centres, assign, changed = steps.block(centres, assign, n, until_converged)
        if until_converged:
            flags = changed.tolist()  # the host synchronisation of this block
            if not all(flags):
                return centres, assign, done + flags.index(False) + 1
        done += n
    return centres, assign, done


def kmeans(
    x: torch.Tensor,
    k: int,
    iters: int = 200,
    generator: torch.Generator | None = None,
    until_converged: bool = True,
    check_every: int | None = None,
    init: str = "greedy",
    num_points: int | None = None,
    graphs: object | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means in fp32 (also under autocast). x float[N,D] → (assignments int64[N] in [0, k'),
    centres float[k',D]), ``k' = min(k, points)``. See ``kmeans_with_iterations``."""
    assign, centres, _ = kmeans_with_iterations(
        x, k, iters, generator, until_converged, check_every, init, num_points, graphs
    )
    return assign, centres


def kmeans_with_iterations(
    x: torch.Tensor,
    k: int,
    iters: int = 200,
    generator: torch.Generator | None = None,
    until_converged: bool = True,
    check_every: int | None = None,
    init: str = "greedy",
    num_points: int | None = None,
    graphs: object | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """k-means++ init (``init``: greedy | single), then Lloyd iterations: (assignments int64[N], centres float[k',D], iterations run).

    ``num_points``: only the first this many rows of ``x`` are points, the rest padding (None: all);
    k' = min(k, num_points); padded rows get the assignment k' (use ``assign[:num_points]``). The result
    does not depend on the padding. ``until_converged`` (the authors' rule): stop when the assignment no
    longer changes, after at most ``iters`` iterations; otherwise run exactly ``iters``. The host checks
    every ``check_every`` iterations (default: every one on CPU, ``GRAPH_BLOCK`` on a GPU, where each
    check is a host synchronisation); any value gives the same result and count. ``graphs``: a
    ``kmeans_graphs.KMeansGraphs`` to replay the seeding and the blocks as CUDA graphs (None: eager).
    Empty clusters keep their previous centre (the authors' code gives them a NaN centre, and ``argmin``
    then sends every point to that cluster: docs/method.md, departure 5).
    """
    if init not in SEEDING_TRIALS:
        raise ValueError(f"k-means init must be one of {tuple(SEEDING_TRIALS)}, got '{init}'")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans needs a non-empty [N,D] tensor, got shape {tuple(x.shape)}")
    n = x.shape[0] if num_points is None else num_points
    if not 0 < n <= x.shape[0]:
        raise ValueError(f"num_points must be in [1, {x.shape[0]}], got {num_points}")
    if check_every is None:
        check_every = 1 if x.device.type == "cpu" else GRAPH_BLOCK
    with fp32_region(x.device):
        x = x.float()
        k = min(k, n)
        x_sq = (x * x).sum(-1)
        valid = last = None
        if n < x.shape[0]:
            valid = torch.arange(x.shape[0], device=x.device) < n
            last = torch.full((), n - 1, dtype=torch.long, device=x.device)
        first, uniforms = seeding_draws(n, k, init, generator, x.device)
        steps: KMeansSteps = EagerSteps(x, x_sq, valid, last) if graphs is None else graphs.steps(x, x_sq, valid, last)
        centres, assign = steps.seeding(k, first, uniforms)
        centres, assign, done = run_lloyd(steps, centres, assign, iters, until_converged, check_every)
    return assign, centres, done
