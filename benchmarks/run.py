#!/usr/bin/env python
"""All CPU benchmarks in one run; prints a markdown table of ratios measured side by side (medians).

  python benchmarks/run.py [--only step region_prior cache loader augment_diff kmeans rss]

Not part of the test suite. Where a step's time goes: benchmarks/profile_step.py. The GPU measurements
are benchmarks/gpu_throughput.py, benchmarks/gpu_augment.py and benchmarks/gpu_check.sh (need a GPU).
``loader`` prints img/s per loader core (one worker process) for the authors'-equivalent pipeline and
ours, and their ratio; ``augment_diff`` the per-pixel differences of our pictures from the previous ones.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import augment_diff
import kmeans as kmeans_bench
import loader
import region_cache
import region_prior
import rss
import step
import torch
from common import table

ROOT = Path(__file__).resolve().parents[1]

BENCHES = {
    "step": step.run,
    "region_prior": region_prior.run,
    "cache": region_cache.run,
    "loader": loader.run,
    "augment_diff": augment_diff.run,
    "kmeans": kmeans_bench.run,
    "rss": rss.run,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=list(BENCHES), default=list(BENCHES))
    a = p.parse_args(argv)
    rows = []
    for name in a.only:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += BENCHES[name]()
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"machine: {machine}\n")
    print(table(rows, ["measurement", "variant", "time / rate", "ratio"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
