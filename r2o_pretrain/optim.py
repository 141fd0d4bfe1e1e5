"""Optimiser and schedules: LARS with bias/norm exclusions, lr warm-up + cosine, K/16 scaling, EMA tau."""

from __future__ import annotations

import math

import torch
from timm.optim import Lars
from torch import nn

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def split_decay_groups(modules: list[nn.Module]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights that get decay + LARS adaptation, biases and all norm-layer parameters that get neither).

    Decided by module type, not by name: the official code matched names and so missed the stem BN.
    """
    regular, excluded = [], []
    seen: set[int] = set()
    for root in modules:
        for module in root.modules():
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                (excluded if isinstance(module, NORM_TYPES) or name == "bias" else regular).append(p)
    return regular, excluded


def build_optimizer(
    modules: list[nn.Module],
    kind: str = "lars",
    weight_decay: float = 1e-6,
    momentum: float = 0.9,
    trust_coefficient: float = 1e-3,
) -> torch.optim.Optimizer:
    """timm's LARS: a group with weight decay is LARS-adapted, the excluded group (wd 0) is plain SGD."""
    regular, excluded = split_decay_groups(modules)
    groups = [
        {"params": regular, "weight_decay": weight_decay, "name": "regular"},
        {"params": excluded, "weight_decay": 0.0, "name": "bias_and_norm"},
    ]
    if kind == "lars":
        return Lars(groups, lr=0.0, momentum=momentum, trust_coeff=trust_coefficient, always_adapt=False)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=0.0, momentum=momentum)
    raise ValueError(f"unknown optimizer '{kind}'")


def scaled_base_lr(base_lr: float, global_batch: int) -> float:
    """The linear scaling rule: ``base_lr * global_batch / 256``."""
    return base_lr * global_batch / 256


def warmup_cosine_lr(step: int, total_steps: int, warmup_steps: int, peak_lr: float) -> float:
    """Linear from 0 to ``peak_lr`` over ``warmup_steps``, then cosine to 0 at ``total_steps``."""
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    if total_steps <= warmup_steps:
        return peak_lr
    t = min((step - warmup_steps) / (total_steps - warmup_steps), 1.0)
    return peak_lr * 0.5 * (1 + math.cos(math.pi * t))


def k_lr_factor(k: int, enabled: bool = True) -> float:
    """The published "lr fix": the lr is multiplied by K/16 (off: 1)."""
    return k / 16 if enabled else 1.0


def target_momentum(step: int, total_steps: int, base_tau: float = 0.99) -> float:
    """``tau = 1 - (1 - base_tau) * (cos(pi * step / total) + 1) / 2``."""
    t = min(step / total_steps, 1.0) if total_steps > 0 else 1.0
    return 1 - (1 - base_tau) * (math.cos(math.pi * t) + 1) / 2


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
