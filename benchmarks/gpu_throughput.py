#!/usr/bin/env python
"""GPU fast path: an R2O step next to a plain BYOL step in the same run, ResNet-50 at 224², one GPU.

bf16 autocast + channels_last (the setting of issue 31's goals), batch 32 (the authors' per-GPU batch) and
256, K = 16 and 128, the k-means eager (``model.kmeans_cuda_graphs=off``) and as CUDA graphs (``auto``, the
default); each table row says whether the graphs were used or fell back. Then k-means alone (padded vs
unpadded vs graphs, to convergence) and scikit-learn; with --profile, the GPU and host time of R2O.forward's
labelled parts (torch.profiler) at the last batch and K. Goals (issue 31, unmeasured until a GPU run):
R2O ≤ 1.20× BYOL's step at K=16 and ≤ 1.25× at K=128, batch 256; ≤ 1.35× at batch 32.

  python benchmarks/gpu_throughput.py [--batches 32 256] [--ks 16 128] [--repeats 10] [--profile]
  python benchmarks/gpu_throughput.py --device cpu --depth 18 --size 64 --hidden 64 --batches 2 --ks 4 \\
      --repeats 1 --warmup 0 --no-kmeans            # a smoke run of the same code on a CPU
"""

from __future__ import annotations

import argparse
import sys

import kmeans as kmeans_bench
import torch
from common import interleaved_median_times, table
from step import make_batch, make_step

GOALS = {(256, 16): 1.20, (256, 128): 1.25, (32, 16): 1.35, (32, 128): 1.35}


def profile_parts(step, device: str) -> None:
    """GPU and host time of each ``record_function`` range of one R2O step (R2O.forward's and step.py's)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    try:
        with profile(activities=activities) as prof:
            for _ in range(3):
                step()
        rows = [
            [e.key, f"{e.device_time_total / 3 / 1000:.1f} ms", f"{e.cpu_time_total / 3 / 1000:.1f} ms"]
            for e in prof.key_averages()
            if e.key.startswith(("r2o.", "step."))
        ]
        print(table(rows, ["range (last batch and K)", "GPU time / step", "host time / step"]))
    except Exception as exc:  # the profile is extra: never lose the throughput table to it
        print(f"profile failed: {type(exc).__name__}: {exc}")


def graph_state(step) -> str:
    """Whether a step's refiner replayed CUDA graphs (``make_step``'s closure carries its model)."""
    g = step.model.refiner.graphs
    if g is None:
        return "eager"
    return f"fell back: {g.failed}" if g.failed else f"graphs ({g.captures} captures, {g.replays} replays)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    p.add_argument("--ks", type=int, nargs="+", default=[16, 128])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--profile", action="store_true", help="GPU/host time per labelled part of one R2O step")
    p.add_argument("--no-kmeans", action="store_true", help="skip the k-means tables")
    a = p.parse_args(argv)
    dev = a.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device (--device cpu runs a smoke test)", file=sys.stderr)
        return 2
    if dev == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    amp, cl = torch.bfloat16, True
    rows = []
    for b in a.batches:
        batch = make_batch(b, a.size, a.size)
        steps = {"byol": make_step("byol", a.depth, batch, a.ks[0], dev, amp, cl, hidden=a.hidden)}
        for k in a.ks:
            for mode in ("off", "auto"):
                steps[f"r2o_k{k}_{mode}"] = make_step(
                    "r2o", a.depth, batch, k, dev, amp, cl, hidden=a.hidden, kmeans_cuda_graphs=mode
                )
        t = interleaved_median_times(steps, repeats=a.repeats, warmup=a.warmup)
        t_byol = t["byol"]
        rows.append([f"batch {b}", "BYOL", "-", f"{t_byol * 1000:.1f} ms", f"{b / t_byol:.0f}", "1.00x", "-", "-"])
        for k in a.ks:
            for mode in ("off", "auto"):
                name = f"r2o_k{k}_{mode}"
                ratio = t[name] / t_byol
                goal = GOALS.get((b, k))
                verdict = "-" if goal is None else f"<= {goal:.2f}x: {'met' if ratio <= goal else 'missed'}"
                rows.append(
                    [
                        f"batch {b}",
                        f"R2O K={k}",
                        mode,
                        f"{t[name] * 1000:.1f} ms",
                        f"{b / t[name]:.0f}",
                        f"{ratio:.2f}x",
                        verdict,
                        graph_state(steps[name]),
                    ]
                )
        if a.profile and b == a.batches[-1]:
            profile_parts(steps[f"r2o_k{a.ks[-1]}_auto"], dev)
        del steps
        if dev == "cuda":
            torch.cuda.empty_cache()
    name = torch.cuda.get_device_name() if dev == "cuda" else "CPU (smoke run)"
    print(f"device: {name}, torch {torch.__version__}; R{a.depth} {a.size}px, bf16 autocast + channels_last")
    header = ["batch", "method", "k-means graphs", "step", "img/s", "step / BYOL", "goal", "k-means ran as"]
    print(table(rows, header))
    if not a.no_kmeans:
        krows = kmeans_bench.padding(a.batches[0], 100, 1024, tuple(a.ks), dev)
        krows += kmeans_bench.run(n=12800, dim=1024, k=a.ks[0], device=dev)
        print(table(krows, ["measurement", "variant", "time", "ratio"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
