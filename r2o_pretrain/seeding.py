"""Derived seeds: every random stream of a run is a function of the run's seed and its counters.

One formula, ``mix_seed``; the named seeds below say which counters each stream uses. A resumed run
draws the same numbers because it recomputes the same seeds from (seed, epoch, index) or (seed, step, rank).
"""

from __future__ import annotations

_SEED_MULTIPLIER = 1_000_003
_MODULUS = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit value


def mix_seed(seed: int, *counters: tuple[int, int]) -> int:
    """(seed·1_000_003 + Σ value·multiplier) mod (2^63 − 1) over ``counters`` = (value, multiplier) pairs;
    distinct primes as multipliers keep the streams of neighbouring counters apart."""
    return (seed * _SEED_MULTIPLIER + sum(value * mult for value, mult in counters)) % _MODULUS


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's crops, flips and colour jitter (data/dataset.py)."""
    return mix_seed(seed, (epoch, 10_007), (index, 7_919), (1, 12_345))


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of one step's k-means initialisation on one process (engine/trainer.py)."""
    return mix_seed(seed, (step, 1_009), (rank, 1))
