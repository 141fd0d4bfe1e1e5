#!/usr/bin/env python
"""GPU fast path: images/s of an R2O step next to a plain BYOL step, ResNet-50 at 224², one GPU.

fp32/tf32 and bf16 autocast + channels_last, batch 64 and 128; R2O also with a fixed 10 k-means iterations
(``model.kmeans_until_converged=false model.kmeans_iters=10``: what the convergence loop costs) and with the
LARS update one parameter at a time (``LARS(foreach=False)``, the reference loop); k-means on the
GPU vs scikit-learn; with --profile, the GPU time of R2O.forward's labelled parts (torch.profiler, CUDA
activity). (torch.compile is measured by the trainer's train.compile=true, not here.) Needs CUDA:

  python benchmarks/gpu_throughput.py [--batches 64 128] [--repeats 10] [--profile]

Goal (issue 8): >= 1,000 img/s for R2O on one H100.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import kmeans as kmeans_bench
import torch
from common import interleaved_median_times, table
from step import make_batch, make_step

ROOT = Path(__file__).resolve().parents[1]


def profile_parts(step) -> None:
    """GPU time of each ``record_function`` range of one R2O step (the ranges of R2O.forward and step.py)."""
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step()
        rows = [
            [e.key, f"{e.device_time_total / 3 / 1000:.1f} ms", f"{e.cpu_time_total / 3 / 1000:.1f} ms"]
            for e in prof.key_averages()
            if e.key.startswith(("r2o.", "step."))
        ]
        print(table(rows, ["range (bf16 + channels_last, last batch)", "GPU time / step", "host time / step"]))
    except Exception as exc:  # the profile is extra: never lose the throughput table to it
        print(f"profile failed: {type(exc).__name__}: {exc}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, nargs="+", default=[64, 128])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--profile", action="store_true", help="GPU time per labelled part of one bf16 R2O step")
    p.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    p.add_argument("--no-kmeans", action="store_true", help="skip the k-means table")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA device", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    rows = []
    for b in a.batches:
        batch = make_batch(b, 224, 224)
        settings = {"fp32": ("fp32/tf32", None, False), "bf16": ("bf16 + channels_last", torch.bfloat16, True)}
        for label, amp, cl in (settings[name] for name in a.precisions):
            steps = {m: make_step(m, 50, batch, a.k, "cuda", amp, cl, hidden=4096) for m in ("byol", "r2o")}
            steps["r2o_k10"] = make_step(
                "r2o", 50, batch, a.k, "cuda", amp, cl, hidden=4096, kmeans_until_converged=False, kmeans_iters=10
            )
            steps["r2o_loop"] = make_step("r2o", 50, batch, a.k, "cuda", amp, cl, hidden=4096, lars_foreach=False)
            t = interleaved_median_times(steps, repeats=a.repeats, warmup=3)
            t_byol, t_r2o, t_k10, t_loop = t["byol"], t["r2o"], t["r2o_k10"], t["r2o_loop"]
            if a.profile and amp is not None and b == a.batches[-1]:
                profile_parts(steps["r2o"])
            del steps
            torch.cuda.empty_cache()
            rows.append(
                [
                    f"R50 224px batch {b}, {label}",
                    f"{b / t_byol:.0f}",
                    f"{b / t_r2o:.0f}",
                    f"{t_r2o / t_byol:.2f}x",
                    f"{b / t_k10:.0f} ({t_k10 / t_byol:.2f}x)",
                    f"{b / t_loop:.0f} ({t_loop / t_byol:.2f}x)",
                ]
            )
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    header = ["setting", "BYOL img/s", "R2O img/s", "R2O step / BYOL step"]
    header += ["R2O, k-means 10 iters: img/s (/ BYOL)", "R2O, LARS per-parameter loop: img/s (/ BYOL)"]
    print(table(rows, header))
    if not a.no_kmeans:
        rows = kmeans_bench.run(n=12800, dim=1024, k=a.k, device="cuda")
        print(table(rows, ["measurement", "variant", "time", "ratio"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
