"""Projector and predictor: BYOL's two-layer MLP (Linear → BN → ReLU → Linear)."""

from __future__ import annotations

from torch import nn


class MLP(nn.Sequential):
    """float[N,in_dim] → float[N,out_dim]. BatchNorm runs over all N rows (all B·K masks)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
