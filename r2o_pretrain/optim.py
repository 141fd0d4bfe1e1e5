"""The optimiser: LARS with biases and norm parameters excluded (the per-step lr and tau: schedules.py)."""

from __future__ import annotations

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


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every parameter group gets ``lr`` (as in the authors' code)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
