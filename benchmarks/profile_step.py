#!/usr/bin/env python
"""Where an R2O step's time goes, next to a BYOL step: torch.profiler over the model's labelled parts,
and the FLOP floor (``torch.utils.flop_counter``) that no implementation can go under.

  python benchmarks/profile_step.py [--depth 18 --batch 16 --view 96 --raw 112 --k 16] [--amp bf16]
                                    [--channels-last] [--steps 5] [--flops-depth 50 --flops-size 224]

Parts are the ``record_function`` ranges of ``R2O.forward`` (r2o.*) and of this script's step (step.*).
CPU only (on a GPU the host-side ranges do not time the kernels; benchmarks/gpu_throughput.py has the
GPU ratio). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from common import table
from step import make_batch, make_step
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

from r2o_pretrain.model.r2o import R2O

ROOT = Path(__file__).resolve().parents[1]

PARTS = (
    ("r2o.raw_view_c4", "target c4 of the raw view (R2O only)"),
    ("r2o.refine", "refiner: superpixel pooling + k-means (R2O only)"),
    ("r2o.view_masks", "masks: one-hot, roi_align, flip, overlap"),
    ("r2o.online_forward", "online forward (encoder, mask pooling, heads on B*M rows)"),
    ("r2o.target_forward", "target forward (encoder, mask pooling, projector)"),
    ("r2o.loss", "loss"),
    ("step.backward", "backward"),
    ("step.optimizer_ema", "LARS step + EMA update"),
)


def part_times(a: argparse.Namespace, amp: torch.dtype | None) -> dict[str, dict[str, float]]:
    """Median ms per step of each labelled part and of the whole step (key ``step``), per method.

    BYOL and R2O steps alternate inside one profile, so that both see the same machine load.
    """
    batch = make_batch(a.batch, a.view, a.raw)
    methods = ("byol", "r2o")
    steps = {
        m: make_step(m, a.depth, batch, a.k, amp=amp, channels_last=a.channels_last, hidden=a.hidden) for m in methods
    }
    for _ in range(2):
        for fn in steps.values():
            fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(a.steps):
            for m, fn in steps.items():
                with record_function(f"method.{m}"):
                    fn()
    events = prof.events()
    ranges = [
        (e.time_range.start, e.time_range.end, e.name.split(".")[1]) for e in events if e.name.startswith("method.")
    ]
    per: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    for start, end, m in ranges:
        per[m].setdefault("step", []).append((end - start) / 1000)
    for e in events:
        if e.name.startswith(("r2o.", "step.")):
            owner = next(m for start, end, m in ranges if start <= e.time_range.start <= end)
            per[owner].setdefault(e.name, []).append((e.time_range.end - e.time_range.start) / 1000)
    return {m: {part: statistics.median(ts) for part, ts in parts.items()} for m, parts in per.items()}


def step_flops(method: str, depth: int, hidden: int, batch: dict, k: int) -> int:
    """FLOPs of one forward + backward (the optimiser and EMA are elementwise and left out)."""
    torch.manual_seed(0)
    model = R2O(depth=depth, method=method, projector_hidden=hidden, predictor_hidden=hidden)
    gen = torch.Generator().manual_seed(0)
    with FlopCounterMode(display=False) as counter:
        out = model(batch["views"], batch["boxes"], batch["raw"], batch["superpixels"], k, gen)
        out.loss.backward()
    return counter.get_total_flops()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=18)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--view", type=int, default=96)
    p.add_argument("--raw", type=int, default=112)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--hidden", type=int, default=1024, help="projector/predictor hidden width")
    p.add_argument("--amp", choices=["none", "bf16"], default="none", help="CPU autocast dtype")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--steps", type=int, default=10, help="profiled steps of each method (after 2 warm-up steps)")
    p.add_argument("--flops-depth", type=int, default=50, help="FLOP floor at the paper's setting: ResNet depth")
    p.add_argument("--flops-size", type=int, default=224, help="... and view = raw size")
    p.add_argument("--flops-hidden", type=int, default=4096, help="... and head width")
    a = p.parse_args(argv)
    amp = torch.bfloat16 if a.amp == "bf16" else None

    times = part_times(a, amp)
    byol, r2o = times["byol"], times["r2o"]
    rows = []
    for key, what in PARTS:
        tb, tr = byol.get(key, 0.0), r2o.get(key, 0.0)
        rows.append([what, f"{tb:.1f}", f"{tr:.1f}", f"{tr - tb:+.1f}"])
    rows.append(["whole step", f"{byol['step']:.1f}", f"{r2o['step']:.1f}", f"{r2o['step'] - byol['step']:+.1f}"])
    layout = ("bf16 autocast" if amp else "fp32") + (", channels_last" if a.channels_last else "")
    print(
        f"ResNet-{a.depth}, batch {a.batch}, views {a.view}px, raw {a.raw}px, K={a.k}, {layout}, "
        f"{torch.get_num_threads()} threads; ms per step, median of {a.steps} profiled steps\n"
    )
    print(table(rows, ["part", "BYOL ms", "R2O ms", "R2O - BYOL"]))
    own = sum(r2o.get(key, 0.0) for key in ("r2o.raw_view_c4", "r2o.refine", "r2o.view_masks"))
    print(
        f"\nR2O-only parts (raw-view c4 + refiner + masks): {own:.1f} ms = {own / byol['step']:.3f} of the BYOL step "
        f"(the other rows do the same work in both, apart from the heads on B*M rows; their differences are "
        f"mostly this machine's noise). Whole step R2O / BYOL: {r2o['step'] / byol['step']:.3f}x"
    )

    # FLOP floor: what the method adds in arithmetic, before any implementation cost.
    print()
    settings = [
        (a.depth, a.view, a.raw, a.hidden, "this profile's setting"),
        (a.flops_depth, a.flops_size, a.flops_size, a.flops_hidden, "paper"),
    ]
    frows = []
    for depth, view, raw, hidden, label in settings:
        batch = make_batch(2, view, raw)
        fb = step_flops("byol", depth, hidden, batch, a.k)
        fr = step_flops("r2o", depth, hidden, batch, a.k)
        frows.append(
            [
                f"ResNet-{depth}, views {view}px, raw {raw}px, heads {hidden} wide, K={a.k} ({label})",
                f"{fb / 2e9:.2f}",
                f"{fr / 2e9:.2f}",
                f"{fr / fb:.3f}x",
            ]
        )
    print(table(frows, ["setting (fwd + bwd, per image)", "BYOL GFLOP", "R2O GFLOP", "R2O / BYOL FLOPs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
