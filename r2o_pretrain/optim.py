"""The optimiser: LARS with biases and norm parameters excluded (the per-step lr and tau: schedules.py).

``LARS`` is written here rather than taken from timm because the authors' update differs from timm's
``Lars`` whenever the lr changes: theirs multiplies the lr into the momentum buffer,

    d = lr · trust · (g + wd·w);   buffer = m·buffer + d   (first step: buffer = d);   w −= buffer,

while timm multiplies the buffer by the lr (buffer = m·buffer + trust·(g + wd·w); w −= lr·buffer).
The two agree only while the lr is constant; R2O's lr changes at every warm-up step (938 on ImageNet)
and at every epoch's K/16 jump. Their trust ratio is η‖w‖ / (‖g‖ + wd·‖w‖), and 1 when ‖w‖ = 0 or that
denominator is 0 (timm adds 1e-8 to the denominator and tests ‖g‖ = 0 instead). ``optim.lars=timm``
selects timm's ``Lars`` (our earlier default).

Which parameters skip weight decay and adaptation: ``optim.exclude=module_type`` (default) takes biases
and every norm layer's parameters; ``official_names`` applies the authors' name rule (a name containing
``bn``, ``downsample.1`` or ``bias``) to their names, which leaves the stem BN weight in the LARS group.
"""

from __future__ import annotations

import torch
from torch import nn

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
LARS_KINDS = ("official", "timm")
EXCLUDE_RULES = ("module_type", "official_names")


class LARS(torch.optim.Optimizer):
    """The authors' LARS (SGD with layer-wise trust ratios, the lr inside the momentum buffer).

    Per parameter w with gradient g, in a group with lr, weight decay wd, momentum m and coefficient eta:
    trust = eta·‖w‖ / (‖g‖ + wd·‖w‖) (1 when ‖w‖ = 0 or the denominator is 0; always 1 in a group with
    ``lars_exclude=True``); d = (g + wd·w)·(lr·trust); buffer = m·buffer + d (d at the first step);
    w −= buffer. No host synchronisation: the trust ratios stay device tensors.

    ``foreach`` (default): each group's update as ``torch._foreach_*`` calls over all its tensors, as torch's
    own SGD/Adam do; ``False``: one parameter at a time (~14 kernel launches each, the reference). The two
    give the same numbers (tested); on a GPU the loop's launches cost more host time than the update's
    kernels (docs/benchmarks.md, GPU).
    """

    def __init__(
        self,
        params,
        lr: float = 0.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 1e-3,
        foreach: bool = True,
    ):
        if lr < 0 or momentum < 0 or weight_decay < 0 or eta < 0:
            raise ValueError(
                f"LARS needs lr, momentum, weight_decay, eta >= 0, got {lr}, {momentum}, {weight_decay}, {eta}"
            )
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_exclude=False)
        super().__init__(params, {**defaults, "foreach": foreach})

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", True)  # optimizer states saved before the switch existed

    def load_state_dict(self, state_dict: dict) -> None:
        if any("eta" not in g for g in state_dict.get("param_groups", [])):
            raise ValueError(
                "this optimizer state is not the authors' LARS (timm's Lars?): resume with optim.lars=timm"
            )
        super().load_state_dict(state_dict)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group["foreach"] and len({(p.device, p.dtype) for p in params}) == 1:
                self._group_step_foreach(group, params)
            else:
                for p in params:
                    self._param_step(group, p)
        return loss

    def _param_step(self, group: dict, p: torch.Tensor) -> None:
        lr, wd, m, eta = group["lr"], group["weight_decay"], group["momentum"], group["eta"]
        g = p.grad
        if group["lars_exclude"]:
            scale = lr
        else:
            w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
            scale = trust_ratio(w_norm, g_norm, wd, eta) * lr
        d = g.add(p, alpha=wd).mul(scale)
        if m != 0:
            state = self.state[p]
            if "momentum_buffer" not in state:
                d = state["momentum_buffer"] = d.clone()
            else:
                d = state["momentum_buffer"].mul_(m).add_(d)
        p.sub_(d)

    def _group_step_foreach(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, wd, m, eta = group["lr"], group["weight_decay"], group["momentum"], group["eta"]
        grads = [p.grad for p in params]
        d = list(torch._foreach_add(grads, params, alpha=wd))
        if group["lars_exclude"]:
            torch._foreach_mul_(d, lr)
        else:
            w_norm, g_norm = torch.stack(torch._foreach_norm(params)), torch.stack(torch._foreach_norm(grads))
            torch._foreach_mul_(d, list((trust_ratio(w_norm, g_norm, wd, eta) * lr).unbind(0)))
        if m != 0:
            states = [self.state[p] for p in params]
            running = [i for i, s in enumerate(states) if "momentum_buffer" in s]  # empty at the first step
            if running:
                bufs = [states[i]["momentum_buffer"] for i in running]
                torch._foreach_mul_(bufs, m)
                torch._foreach_add_(bufs, [d[i] for i in running])
            for s, d_i in zip(states, d):
                if "momentum_buffer" not in s:
                    s["momentum_buffer"] = d_i.clone()
            d = [s["momentum_buffer"] for s in states]
        torch._foreach_sub_(params, d)


def trust_ratio(w_norm: torch.Tensor, g_norm: torch.Tensor, weight_decay: float, eta: float) -> torch.Tensor:
    """The authors' trust ratio, elementwise over norms float[...] : eta·‖w‖ / (‖g‖ + wd·‖w‖), 1 where
    ‖w‖ = 0 or that denominator is 0."""
    denom = g_norm + weight_decay * w_norm
    one = torch.ones_like(w_norm)
    return torch.where(w_norm > 0, torch.where(denom > 0, eta * w_norm / denom, one), one)


def official_parameter_name(module_index: int, name: str) -> str:
    """Our parameter name → the authors' (their rule is a substring test on it).

    ``module_index`` is the position in ``R2O.online_modules()`` (0 encoder, 1 projector, 2 predictor).
    Their encoder is an ``nn.Sequential`` of torchvision's children (0 conv1, 1 bn1, 4–7 layer1–4), their
    MLP names its layers ``l1``, ``bn1``, ``l2``.
    """
    if module_index == 0:
        head, _, rest = name.partition(".")
        seq = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
        return f"online_network.encoder.{seq.get(head, head)}.{rest}"
    layer, _, rest = name.partition(".")
    mlp = {"0": "l1", "1": "bn1", "3": "l2"}.get(layer, layer)
    return f"online_network.projetion.{mlp}.{rest}" if module_index == 1 else f"predictor.predictor.{mlp}.{rest}"


def excluded_by_official_name(name: str) -> bool:
    """The authors' rule (utils/params_util.py): no decay, no adaptation for these names."""
    return "bn" in name or "downsample.1" in name or "bias" in name


def split_decay_groups(
    modules: list[nn.Module], rule: str = "module_type"
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights that get decay + LARS adaptation, biases and norm-layer parameters that get neither).

    ``module_type``: decided by module type (every norm layer, every bias). ``official_names``: the
    authors' name rule on their names (``official_parameter_name``), which misses the stem BN weight
    (``encoder.1.weight``; its bias is excluded as a bias). Only the online modules' names map to theirs.
    """
    if rule not in EXCLUDE_RULES:
        raise ValueError(f"exclusion rule must be one of {EXCLUDE_RULES}, got '{rule}'")
    regular, excluded = [], []
    seen: set[int] = set()
    for index, root in enumerate(modules):
        for module_name, module in root.named_modules():
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                if rule == "module_type":
                    out = isinstance(module, NORM_TYPES) or name == "bias"
                else:
                    full = f"{module_name}.{name}" if module_name else name
                    out = excluded_by_official_name(official_parameter_name(index, full))
                (excluded if out else regular).append(p)
    return regular, excluded


def build_optimizer(
    modules: list[nn.Module],
    kind: str = "lars",
    weight_decay: float = 1e-6,
    momentum: float = 0.9,
    trust_coefficient: float = 1e-3,
    lars: str = "official",
    exclude: str = "module_type",
) -> torch.optim.Optimizer:
    """LARS over two groups: the regular one (decay, adaptation) and the excluded one (wd 0, trust 1).

    ``lars``: ``official`` (the authors' update, ``LARS`` above) or ``timm`` (timm's ``Lars``, which adapts
    exactly the groups with weight decay). ``kind="sgd"``: the same groups, plain SGD with momentum.
    """
    regular, excluded = split_decay_groups(modules, exclude)
    groups = [
        {"params": regular, "weight_decay": weight_decay, "name": "regular"},
        {"params": excluded, "weight_decay": 0.0, "name": "bias_and_norm"},
    ]
    if kind == "lars":
        if lars == "official":
            groups[1]["lars_exclude"] = True
            return LARS(groups, lr=0.0, momentum=momentum, eta=trust_coefficient)
        if lars == "timm":
            from timm.optim import Lars  # here, not at the top: timm's import costs every run ~0.5 s

            return Lars(groups, lr=0.0, momentum=momentum, trust_coeff=trust_coefficient, always_adapt=False)
        raise ValueError(f"lars must be one of {LARS_KINDS}, got '{lars}'")
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=0.0, momentum=momentum)
    raise ValueError(f"unknown optimizer '{kind}'")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every parameter group gets ``lr`` (as in the authors' code)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
