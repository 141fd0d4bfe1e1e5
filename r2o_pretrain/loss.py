"""The masked BYOL loss: normalised MSE per region mask, counted only where the mask is in both views."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalized_mse(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """float[...,D] × float[...,D] → float[...]: ``||p/|p| - z/|z|||² = 2 - 2 cos(p, z)``."""
    return (F.normalize(p.float(), dim=-1) - F.normalize(z.float(), dim=-1)).pow(2).sum(-1)


def masked_byol_loss(p: torch.Tensor, z: torch.Tensor, counted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean normalised MSE over the counted masks.

    p: float[N,M,D] online predictions; z: float[N,M,D] target projections of the *other* view, row
    by row; counted: bool[N,M], True where the mask has area in *both* views (the overlap indicator).
    With both directions stacked (N = 2B, as R2O.forward does) this is the authors' loss: the sum
    over both directions and counted masks divided by 2 x counted — the mean of the two directions.
    returns (loss scalar, number of counted masks as an int64 scalar). With no counted mask the loss is
    an exact zero that still depends on ``p``, so backward and DDP's gradient reduction run normally.
    """
    per_mask = normalized_mse(p, z.detach())
    n = counted.sum()
    loss = (per_mask * counted).sum() / n.clamp_min(1)
    return loss, n


def overlap_indicator(mass_v1: torch.Tensor, mass_v2: torch.Tensor, threshold: float = 1e-3) -> torch.Tensor:
    """float[B,M] × float[B,M] → bool[B,M]: the mask's area is above ``threshold`` in both views."""
    return (mass_v1 > threshold) & (mass_v2 > threshold)
