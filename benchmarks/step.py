"""Training step time: R2O vs BYOL, same encoder, batch and image size (EMA + forward + backward + LARS).

R2O runs twice: with the default k-means (until the assignment stops changing, at most 200 iterations)
and with a fixed 10 iterations (``model.kmeans_until_converged=false model.kmeans_iters=10``).

The methods run interleaved (one step of each per repeat), so that a busy or throttled machine slows
all of them alike and the ratios stay meaningful; each time is the median over repeats.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from common import interleaved_median_times
from torch.profiler import record_function

from r2o_pretrain.data.segment_counts import SegmentCounts
from r2o_pretrain.model.r2o import R2O
from r2o_pretrain.optim import build_optimizer


def make_batch(b: int, view: int, raw: int, segments: int = 100, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    # blocky superpixels (~`segments` per image), like SLIC's label maps
    side = max(1, int(segments**0.5))
    cells = torch.arange(side * side).view(side, side)
    sp = cells.repeat_interleave(raw // side + 1, 0).repeat_interleave(raw // side + 1, 1)[:raw, :raw]
    boxes = torch.tensor([[0.1, 0.05, 0.9, 0.8, 0.0], [0.0, 0.2, 0.7, 1.0, 1.0]])
    return {
        "views": torch.randn(b, 2, 3, view, view, generator=g),
        "boxes": boxes.expand(b, 2, 5).clone(),
        "raw": torch.randn(b, 3, raw, raw, generator=g),
        "superpixels": sp.expand(b, raw, raw).clone(),
    }


def make_step(
    method: str,
    depth: int,
    batch: dict,
    k: int,
    device: str = "cpu",
    amp: torch.dtype | None = None,
    channels_last: bool = False,
    hidden: int = 1024,
    kmeans_until_converged: bool = True,
    kmeans_iters: int = 200,
    lars_foreach: bool = True,
    kmeans_cuda_graphs: str = "auto",
) -> Callable[[], None]:
    """One full training step of ``method`` as a closure (model and optimiser built once). The batch's
    superpixel counts travel with it, as the loader's ``collate`` sends them (no read-back in the step)."""
    torch.manual_seed(0)
    model = R2O(
        depth=depth,
        method=method,
        projector_hidden=hidden,
        predictor_hidden=hidden,
        kmeans_iters=kmeans_iters,
        kmeans_until_converged=kmeans_until_converged,
    ).to(device)
    model.refiner = dataclasses.replace(model.refiner, kmeans_cuda_graphs=kmeans_cuda_graphs)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model.online_modules())
    for group in opt.param_groups:
        group["lr"], group["foreach"] = 0.01, lars_foreach
    data = {k_: v.to(device) for k_, v in batch.items()}
    segments = SegmentCounts.of(batch["superpixels"])
    gen = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        with torch.autocast(device, dtype=amp, enabled=amp is not None):
            # the EMA (tau 0.99) runs inside the forward, after the online pass, as in the trainer
            out = model(
                data["views"], data["boxes"], data["raw"], data["superpixels"], k, gen, tau=0.99, segments=segments
            )
        opt.zero_grad(set_to_none=True)
        with record_function("step.backward"):
            out.loss.backward()
        with record_function("step.optimizer_ema"):
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    step.model = model  # for a caller that reports on it (gpu_throughput.py: did the graphs run)
    return step


def run(depth: int = 18, b: int = 16, view: int = 96, k: int = 16, repeats: int = 7) -> list[list[str]]:
    rows = []
    settings = [
        (112, None, False, "fp32"),  # the demo config's sizes
        (view, None, False, "fp32"),  # raw = view size, as in the paper (224/224)
        (view, torch.bfloat16, True, "bf16 autocast + channels_last"),
    ]
    for raw, amp, cl, label in settings:
        batch = make_batch(b, view, raw)
        steps = {m: make_step(m, depth, batch, k, amp=amp, channels_last=cl) for m in ("byol", "r2o", "detcon")}
        steps["r2o_fixed10"] = make_step(
            "r2o", depth, batch, k, amp=amp, channels_last=cl, kmeans_until_converged=False, kmeans_iters=10
        )
        t = interleaved_median_times(steps, repeats=repeats, warmup=2)
        what = f"train step, ResNet-{depth}, batch {b}, views {view}px, raw {raw}px, K={k}, {label} (CPU)"
        rows += [
            [what, "BYOL step", f"{t['byol'] * 1000:.0f} ms", "1.00x (baseline)"],
            [
                what,
                "R2O step (k-means to convergence, default)",
                f"{t['r2o'] * 1000:.0f} ms",
                f"{t['r2o'] / t['byol']:.2f}x BYOL (target <= 1.10x)",
            ],
            [
                what,
                "R2O step (k-means fixed 10 iterations)",
                f"{t['r2o_fixed10'] * 1000:.0f} ms",
                f"{t['r2o_fixed10'] / t['byol']:.2f}x BYOL",
            ],
            [what, "DetCon step", f"{t['detcon'] * 1000:.0f} ms", f"{t['detcon'] / t['byol']:.2f}x BYOL"],
        ]
    return rows
