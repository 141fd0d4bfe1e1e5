"""Every per-step value of a pretraining run — lr (with the K/16 factor), target momentum tau, the
curriculum's K and the superpixels-only rule — in one place, as the authors' code computes them
(docs/method.md, "Schedules").

``TrainingPlan.at(step)`` is what the trainer, ``tools/pretrain.py --dry-run`` and the benchmarks use.
Steps count optimiser steps from 0; epochs are numbered 1..E as in the authors' training loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

SCHEDULES = ("cosine", "half_cosine", "linear", "piecewise", "constant")
SUPERPIXELS_ONLY_ABOVE = 128  # K above this: no refinement, the superpixels themselves are the masks


def half_cosine(t: float) -> float:
    """``(1 + cos(pi * t)) / 2``: 1 at t=0, 0 at t=1 (t clipped to [0, 1]). The one cosine of lr and tau."""
    return (1 + math.cos(math.pi * min(max(t, 0.0), 1.0))) / 2


# ---------------------------------------------------------------------------------------------- K
def curriculum_k(
    epoch: int,
    schedule: str,
    epoch_range: tuple[float, float],
    k_range: tuple[int, int],
    milestones: Sequence[Sequence[int]] = (),
) -> int:
    """K of ``epoch`` (numbered from 1), before the superpixels-only rule; always >= 1.

    ``cosine`` is the authors' quarter cosine: for e0 < e < e1, x = ((e - e0) / (e1 - e0)) * (pi/2) in
    float64 and in that order (x = pi/2 - x when K increases), K = int(cos(x) * (Kmax - Kmin) + Kmin);
    K = Kstart up to e0 and Kend from e1 on. ``half_cosine`` is the lr-style ``(1 + cos(pi t)) / 2``
    (a departure, for comparison), ``linear`` interpolates, ``piecewise`` takes the last milestone
    ``[epoch_i, K_i]`` with ``epoch_i <= epoch``, ``constant`` is Kstart.
    """
    e0, e1 = epoch_range
    k_start, k_end = k_range
    if schedule == "constant":
        k = k_start
    elif schedule == "piecewise":
        k = int(milestones[0][1])
        for start, value in sorted(milestones, key=lambda m: m[0]):
            if epoch >= start:
                k = int(value)
    elif epoch <= e0:
        k = k_start
    elif epoch >= e1:
        k = k_end
    elif schedule == "cosine":
        x = ((epoch - e0) / (e1 - e0)) * (math.pi / 2)
        if k_end > k_start:
            x = math.pi / 2 - x
        k = int(math.cos(x) * (max(k_range) - min(k_range)) + min(k_range))
    elif schedule == "half_cosine":
        k = int(k_end + (k_start - k_end) * half_cosine((epoch - e0) / (e1 - e0)))
    elif schedule == "linear":
        k = int(k_start + (k_end - k_start) * (epoch - e0) / (e1 - e0))
    else:
        raise ValueError(f"unknown curriculum schedule '{schedule}' (one of {', '.join(SCHEDULES)})")
    return max(1, k)


# ---------------------------------------------------------------------------------------------- lr, tau
def warmup_cosine_lr(step: int, warmup_steps: int, total_steps: int, max_lr: float) -> float:
    """The authors' lr before the K factor: ``step / warmup * max_lr`` during warm-up (0 at step 0),
    then ``max_lr * half_cosine(min(s - w, T - w) / (T - w))``."""
    if step < warmup_steps:
        return step / warmup_steps * max_lr
    if total_steps <= warmup_steps:
        return max_lr
    return max_lr * half_cosine(min(step - warmup_steps, total_steps - warmup_steps) / (total_steps - warmup_steps))


def target_momentum(step: int, total_steps: int, base_tau: float = 0.99) -> float:
    """``tau(s) = 1 - (1 - base_tau) * (cos(pi * s / T) + 1) / 2``."""
    return 1 - (1 - base_tau) * half_cosine(step / total_steps if total_steps > 0 else 1.0)


def k_lr_factor(k: int, enabled: bool = True) -> float:
    """The published "lr fix": the lr is multiplied by K/16 (1 when disabled)."""
    return k / 16 if enabled else 1.0


def steps_per_epoch(num_examples: int, world_size: int, batch_size: int) -> int:
    """Optimiser steps the loader yields per epoch: DistributedSampler(drop_last) then whole batches."""
    return (num_examples // world_size) // batch_size


# ---------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class StepValues:
    lr: float  # the lr every parameter group gets at this step (K factor included)
    tau: float  # target momentum used for the EMA update at the start of this step
    k: int  # the curriculum's K of this step's epoch
    superpixels_only: bool  # K above SUPERPIXELS_ONLY_ABOVE: no refinement
    epoch: int  # numbered from 1


@dataclass(frozen=True)
class TrainingPlan:
    """Per-step values of a run of ``epochs`` epochs over ``num_examples`` images, ``world_size`` x
    ``batch_size`` images per step. ``warmup_steps`` and ``total_steps`` are the authors' formulas
    (``3·N//GB`` and ``E·N//GB``), which may exceed the steps the loader runs (whole batches only)."""

    num_examples: int
    world_size: int
    batch_size: int
    epochs: int
    base_lr: float = 0.3
    warmup_epochs: float = 3.0
    lr_k_scaling: bool = True
    base_tau: float = 0.99
    schedule: str = "cosine"
    k_start: int = 128
    k_end: int = 4
    curriculum_epochs: tuple[float, float] = (0, -1)  # (e0, e1); e1 < 0: the whole run
    milestones: tuple[tuple[int, int], ...] = ()
    superpixels_only_above: int = SUPERPIXELS_ONLY_ABOVE

    @property
    def global_batch(self) -> int:
        return self.world_size * self.batch_size

    @property
    def max_lr(self) -> float:
        return self.base_lr * self.global_batch / 256

    @property
    def warmup_steps(self) -> int:
        return int(self.warmup_epochs * self.num_examples) // self.global_batch

    @property
    def total_steps(self) -> int:
        """T of the lr and tau formulas: ``E·N//GB``."""
        return self.epochs * self.num_examples // self.global_batch

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.num_examples, self.world_size, self.batch_size)

    @property
    def run_steps(self) -> int:
        """Steps the training loop runs: whole batches per epoch times epochs."""
        return self.epochs * self.steps_per_epoch

    def warmup_warning(self, stop_step: int | None = None) -> str | None:
        """Why the lr never reaches its peak in this run (None: it does): the warm-up
        (``optim.warmup_epochs``) is as long as the run or longer, or ``stop_step`` (``train.max_steps``)
        cuts the run inside it."""
        w, run = self.warmup_steps, self.run_steps
        if w == 0:
            return None
        if w >= run:
            return (
                f"the lr warm-up ({w} steps = warmup_epochs x N // global batch) is not shorter than the run "
                f"({run} steps): the lr reaches {(run - 1) / w:.0%} of its peak {self.max_lr:.4g} at the last step and "
                "never decays; lower optim.warmup_epochs (or train more epochs)"
            )
        if stop_step is not None and stop_step < w:
            return (
                f"train.max_steps={stop_step} stops the run inside the lr warm-up ({w} steps): the lr reaches "
                f"{(stop_step - 1) / w:.0%} of its peak {self.max_lr:.4g}"
            )
        return None

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch + 1

    def k_of_epoch(self, epoch: int) -> int:
        e0, e1 = self.curriculum_epochs
        return curriculum_k(
            epoch, self.schedule, (e0, e1 if e1 >= 0 else self.epochs), (self.k_start, self.k_end), self.milestones
        )

    def at(self, step: int) -> StepValues:
        epoch = self.epoch_of(step)
        k = self.k_of_epoch(epoch)
        lr = warmup_cosine_lr(step, self.warmup_steps, self.total_steps, self.max_lr) * k_lr_factor(
            k, self.lr_k_scaling
        )
        tau = target_momentum(step, self.total_steps, self.base_tau)
        return StepValues(lr, tau, k, k > self.superpixels_only_above, epoch)

    def rows(self) -> list[dict]:
        """One row per epoch: epoch, K, first and last step, lr and tau at the first step."""
        out = []
        for e in range(1, self.epochs + 1):
            first = (e - 1) * self.steps_per_epoch
            v = self.at(first)
            out.append(
                {
                    "epoch": e,
                    "k": v.k,
                    "superpixels_only": v.superpixels_only,
                    "first_step": first,
                    "last_step": first + self.steps_per_epoch - 1,
                    "lr": v.lr,
                    "tau": v.tau,
                }
            )
        return out

    def table(self) -> str:
        """The per-epoch plan and the totals, as printed by ``tools/pretrain.py --dry-run``."""
        lines = [
            f"images per epoch N={self.num_examples}, {self.world_size} process(es) x {self.batch_size} = global "
            f"batch {self.global_batch}, {self.steps_per_epoch} steps/epoch; max lr {self.max_lr:.6g} "
            f"(x K/16: {self.lr_k_scaling}), warm-up {self.warmup_steps} steps, T={self.total_steps} (lr, tau)",
            f"{'epoch':>6} {'K':>5} {'steps':>17} {'lr':>12} {'tau':>12}",
        ]
        for r in self.rows():
            k = f"{r['k']}{'*' if r['superpixels_only'] else ''}"
            steps = f"{r['first_step']}..{r['last_step']}"
            lines.append(f"{r['epoch']:>6} {k:>5} {steps:>17} {r['lr']:>12.6g} {r['tau']:>12.8f}")
        lines.append(
            f"total: {self.run_steps} steps, {self.run_steps * self.global_batch} images seen, "
            f"effective global batch {self.global_batch}"
            + ("  (* = superpixels only, no refinement)" if any(r["superpixels_only"] for r in self.rows()) else "")
        )
        return "\n".join(lines)


def plan_from_config(cfg, num_examples: int, world_size: int) -> TrainingPlan:
    """The plan of ``cfg`` (an r2o_pretrain.config.Config) for ``num_examples`` images on ``world_size``
    processes."""
    c, o = cfg.curriculum, cfg.optim
    return TrainingPlan(
        num_examples=num_examples,
        world_size=world_size,
        batch_size=cfg.train.batch_size,
        epochs=cfg.train.epochs,
        base_lr=o.base_lr,
        warmup_epochs=o.warmup_epochs,
        lr_k_scaling=o.lr_k_scaling,
        base_tau=o.base_tau,
        schedule=c.schedule,
        k_start=c.k_start,
        k_end=c.k_end,
        curriculum_epochs=(c.start_epoch, c.epochs),
        milestones=tuple(tuple(m) for m in c.milestones),
        superpixels_only_above=cfg.model.superpixel_only_above,
    )
