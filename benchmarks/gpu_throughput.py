#!/usr/bin/env python
"""GPU fast path: images/s of an R2O step next to a plain BYOL step, ResNet-50 at 224², one GPU.

fp32/tf32 and bf16 autocast + channels_last, batch 64 and 128; k-means on the GPU vs scikit-learn.
(torch.compile is measured by the trainer's train.compile=true, not here.) Needs CUDA:

  python benchmarks/gpu_throughput.py [--batches 64 128] [--repeats 10]

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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, nargs="+", default=[64, 128])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--k", type=int, default=16)
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
        for label, amp, cl in (("fp32/tf32", None, False), ("bf16 + channels_last", torch.bfloat16, True)):
            steps = {m: make_step(m, 50, batch, a.k, "cuda", amp, cl, hidden=4096) for m in ("byol", "r2o")}
            t = interleaved_median_times(steps, repeats=a.repeats, warmup=3)
            t_byol, t_r2o = t["byol"], t["r2o"]
            del steps
            torch.cuda.empty_cache()
            rows.append(
                [f"R50 224px batch {b}, {label}", f"{b / t_byol:.0f}", f"{b / t_r2o:.0f}", f"{t_r2o / t_byol:.2f}x"]
            )
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(table(rows, ["setting", "BYOL img/s", "R2O img/s", "R2O step / BYOL step"]))
    print(table(kmeans_bench.run(n=12800, dim=1024, k=a.k, device="cuda"), ["measurement", "variant", "time", "ratio"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
