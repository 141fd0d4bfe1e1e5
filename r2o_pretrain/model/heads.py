"""Projector and predictor: BYOL's two-layer MLP (Linear → BN → ReLU → Linear), and how to run them on
only the non-empty mask rows with the numbers of running them on all rows.

The authors run both MLPs on all 2B·K mask rows, and their BatchNorm normalises over all of them, the
rows of masks absent from a view (exact zero vectors) included. Every zero row is the same vector after
the first Linear (its bias), so the heads can run on the non-empty rows plus one representative zero row
that counts ``n_zero`` times in the BatchNorm statistics (``RowWeightedBatchNorm1d``): the same
statistics, outputs and gradients, at the cost of the non-empty rows (docs/method.md, "Heads on the
non-empty rows"). ``apply_heads`` does that and puts every row back.

Written by hand because no BatchNorm in torch takes per-row weights (``nn.SyncBatchNorm``'s counts are
per process, and its kernels are CUDA-only); the parameters, buffers and update rule are
``nn.BatchNorm1d``'s, so checkpoints and exports do not change.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce


def weighted_moments(
    x: torch.Tensor, weight: torch.Tensor, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x float[R,C], weight float[R] (row i stands for weight[i] equal rows) → (mean float[C], biased
    variance float[C], row count N scalar), all of the rows the weights stand for.

    ``reduce`` sums a tensor over processes (autograd-aware, as SyncBatchNorm's statistics): the count and
    sums are reduced first, then the squared deviations from the global mean (two passes, no E[x²]−μ²).
    """
    sums = torch.cat([weight @ x, weight.sum()[None]])
    if reduce is not None:
        sums = reduce(sums)
    count = sums[-1]
    mean = sums[:-1] / count
    squares = weight @ (x - mean).square()
    if reduce is not None:
        squares = reduce(squares)
    return mean, squares / count, count


def _summed_over_processes(t: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
    """All-reduce (sum) that autograd differentiates (its backward sums the gradients, as SyncBatchNorm's)."""
    with warnings.catch_warnings():  # torch 2.x marks it deprecated for the private _functional_collectives
        warnings.simplefilter("ignore", FutureWarning)
        return all_reduce(t, group=group or dist.group.WORLD)


class RowWeightedBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` (same parameters, buffers and state_dict keys) whose rows may carry a
    multiplicity: ``forward(x float[R,C], row_weight float[R])`` normalises as ``nn.BatchNorm1d`` would
    over the batch in which row i occurs ``row_weight[i]`` times — weighted mean and biased variance, the
    running variance unbiased with the full row count N (σ²·N/(N−1)), the same momentum. Without
    ``row_weight``, or in eval mode (running statistics), it is ``nn.BatchNorm1d`` itself.

    ``synchronised`` (set by ``engine.distributed.convert_sync_batchnorm``): the weighted sums are summed
    over the processes of ``process_group`` with an autograd-aware all_reduce, as ``nn.SyncBatchNorm``
    sums its statistics (then rows without a weight count once each).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        super().__init__(num_features, eps, momentum)
        self.synchronised = False
        self.process_group: dist.ProcessGroup | None = None

    def forward(self, x: torch.Tensor, row_weight: torch.Tensor | None = None) -> torch.Tensor:
        synchronised = self.synchronised and dist.is_available() and dist.is_initialized()
        if not self.training or (row_weight is None and not synchronised):
            return super().forward(x)
        if x.dim() != 2:
            raise ValueError(f"RowWeightedBatchNorm1d expects float[R,C] rows, got shape {tuple(x.shape)}")
        dtype = torch.promote_types(x.dtype, torch.float32)  # bf16/fp16 rows: statistics in fp32, as BN kernels
        weight = x.new_ones(x.shape[0], dtype=dtype) if row_weight is None else row_weight.to(dtype)
        group = self.process_group
        reduce = (lambda t: _summed_over_processes(t, group)) if synchronised else None
        with torch.autocast(x.device.type, enabled=False):
            x32 = x.to(dtype)
            mean, var, count = weighted_moments(x32, weight, reduce)
            if self.track_running_stats:
                self._update_running_stats(mean.detach(), var.detach(), count.detach())
            scale = torch.rsqrt(var + self.eps)
            if self.affine:
                scale = scale * self.weight
            y = (x32 - mean) * scale
            if self.affine:
                y = y + self.bias
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        """As ``F.batch_norm`` in training: running ← (1 − f)·running + f·batch, the variance unbiased."""
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative moving average
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        unbiased = var * (count / (count - 1))
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)


class MLP(nn.Sequential):
    """float[N,in_dim] → float[N,out_dim]. BatchNorm runs over all N rows (all B·K masks), or over the
    rows ``row_weight`` stands for (see ``RowWeightedBatchNorm1d``). Keys 0/1/3 as the authors' MLP."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim),
            RowWeightedBatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: torch.Tensor, row_weight: torch.Tensor | None = None) -> torch.Tensor:
        if row_weight is None:
            return super().forward(x)
        linear1, norm, relu, linear2 = self
        if not isinstance(norm, RowWeightedBatchNorm1d):
            raise TypeError(
                f"row weights need the heads' RowWeightedBatchNorm1d, found {type(norm).__name__} (convert "
                "BatchNorm layers with r2o_pretrain.engine.distributed.convert_sync_batchnorm, or set "
                "model.sparse_heads=false)"
            )
        return linear2(relu(norm(linear1(x), row_weight)))


class OccupiedRows:
    """The non-empty rows of N rows, one representative empty row, and the way back to all N rows.

    Compact row 0 is the representative empty row (weight n_zero, possibly 0), rows 1.. the non-empty
    rows in order (weight 1). ``expand`` maps compact rows back: every empty row gets row 0.
    """

    def __init__(self, occupied: torch.Tensor) -> None:
        """occupied: bool[N]. On CUDA, finding the rows (``nonzero``) waits for the device once."""
        occupied = occupied.reshape(-1)
        self.num_rows = occupied.numel()
        self.index = occupied.nonzero().squeeze(1)  # int64[R]
        self.inverse = torch.where(occupied, occupied.long().cumsum(0), 0)  # int64[N] → position in compact
        n_zero = (self.num_rows - occupied.sum()).float()
        self.weight = torch.cat([n_zero[None], occupied.new_ones(self.index.numel(), dtype=torch.float32)])

    def halves_swapped(self) -> OccupiedRows:
        """The same rows for the input with its two halves swapped (``cat([x[N/2:], x[:N/2]])``: the target
        sees the views in the other order), without finding them again (no second wait on CUDA)."""
        half = self.num_rows // 2
        if 2 * half != self.num_rows:
            raise ValueError(f"halves_swapped needs an even number of rows, got {self.num_rows}")
        out = object.__new__(OccupiedRows)
        out.num_rows, out.weight = self.num_rows, self.weight
        out.index = (self.index + half) % self.num_rows  # compact order unchanged: BN's sums are order-free
        out.inverse = self.inverse.roll(half)
        return out

    def compact(self, x: torch.Tensor) -> torch.Tensor:
        """float[N,C] (empty rows exactly zero) → float[R+1,C]: a zero row, then the non-empty rows."""
        return torch.cat([x.new_zeros(1, x.shape[1]), x.index_select(0, self.index)])

    def expand(self, y: torch.Tensor) -> torch.Tensor:
        """float[R+1,D] → float[N,D]; backward sums every empty row's gradient into row 0."""
        return y.index_select(0, self.inverse)


def apply_heads(
    x: torch.Tensor, heads: Sequence[MLP], occupied: torch.Tensor | OccupiedRows | None = None
) -> list[torch.Tensor]:
    """Chain ``heads`` on x float[N,M,C] (each head takes the previous one's output) → every head's output
    float[N,M,D_i], all rows.

    occupied: bool[N,M], False where the row's mask is all zero (its pooled vector is then exactly zero).
    Given, the heads run on the occupied rows plus one representative zero row counted n_zero times in
    their BatchNorm: the dense result within float rounding (tests/test_sparse_heads.py). An
    ``OccupiedRows`` of the N·M rows may be given instead (found once, reused). None: all rows.
    """
    n, m, _ = x.shape
    rows = x.reshape(n * m, -1)
    outputs = []
    if occupied is None:
        for head in heads:
            rows = head(rows)
            outputs.append(rows.view(n, m, -1))
        return outputs
    picked = occupied if isinstance(occupied, OccupiedRows) else OccupiedRows(occupied)
    rows = picked.compact(rows)
    for head in heads:
        rows = head(rows, picked.weight)
        outputs.append(picked.expand(rows).view(n, m, -1))
    return outputs
