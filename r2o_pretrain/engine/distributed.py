"""The one place that knows about torch.distributed: torchrun's environment → process group, device.

Multi-node runs use torchrun's own flags (``--nnodes --node-rank --rdzv-endpoint``); nothing here
replaces them. Elastic restarts (``torchrun --max-restarts N``) start every worker afresh: with
``--resume auto`` they continue from the last checkpoint (tests/test_scale.py kills a worker to check it).
They need ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` in torchrun's environment: by default torchrun keeps
one store for all attempts, and a restarted worker can read the previous attempt's addresses from it and
fail to connect (pytorch/pytorch#135712, #167288; seen here with gloo).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..model.heads import RowWeightedBatchNorm1d

logger = logging.getLogger("r2o")


@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def convert_sync_batchnorm(
    module: nn.Module, keep_row_weighted: bool = True, process_group: dist.ProcessGroup | None = None
) -> nn.Module:
    """Every BatchNorm of ``module`` synchronised over ``process_group`` (None: all processes).

    ``keep_row_weighted``: the heads' ``RowWeightedBatchNorm1d`` layers stay themselves and all-reduce
    their weighted sums (what ``model.sparse_heads`` needs); the others become ``nn.SyncBatchNorm``
    (``torch.nn.SyncBatchNorm.convert_sync_batchnorm``). False: all become ``nn.SyncBatchNorm``.
    Returns the module (converted in place, or a new one when ``module`` itself is a BatchNorm).
    """
    if keep_row_weighted and isinstance(module, RowWeightedBatchNorm1d):
        module.synchronised, module.process_group = True, process_group
        return module
    if not keep_row_weighted or isinstance(module, nn.modules.batchnorm._BatchNorm):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, keep_row_weighted, process_group))
    return module


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available; use train.device=cpu")
    return torch.device("cuda", local_rank)


def init_distributed(preference: str = "auto") -> DistInfo:
    """Join torchrun's process group (NCCL on GPU, gloo on CPU), or describe a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        if shared_store_with_restarts(os.environ) and rank == 0:
            logger.warning(
                "torchrun --max-restarts with its shared rendezvous store: a restarted group can fail to connect "
                "(stale addresses of the previous attempt). Set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 for torchrun."
            )
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, device)


def shared_store_with_restarts(env: Mapping[str, str]) -> bool:
    """Whether torchrun restarts this group in place while sharing one rendezvous store across attempts."""
    return env.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and int(env.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0


def all_true(flag: bool, info: DistInfo) -> bool:
    """True only if ``flag`` is True on every process."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0)


def any_true(flag: bool, info: DistInfo) -> bool:
    """True on every process if ``flag`` is True on any process (one all-reduce of one number)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def union_across_ranks(items: set[str], info: DistInfo) -> set[str]:
    """The union of every process's ``items`` (on every process; one all-gather of the sets)."""
    if not info.distributed:
        return set(items)
    gathered: list = [None] * info.world_size
    dist.all_gather_object(gathered, sorted(items))
    return set().union(*gathered)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
