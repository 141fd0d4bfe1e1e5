#!/usr/bin/env python
"""Fill the superpixel cache before pretraining, on all cores (and machines), so that the first epoch
does not run SLIC inside the loader.

Takes the same --config and key=value settings as tools/pretrain.py; the cache entries it writes are
exactly the ones training reads (same raw view, data.n_segments, data.slic_compactness,
data.superpixel_cache). Unreadable files are listed and skipped, as training skips them. Re-running
is cheap: cached files are only checked, and entries of the earlier int16 .npy format are converted to
the compact one (~3 KB per 224² entry instead of 100 KB). Keys hold paths relative to data.root, so a
cache filled on one machine serves every machine that mounts the same data, at any path.

Examples:
  python tools/cache_superpixels.py                                   # the demo config
  python tools/cache_superpixels.py --config configs/pretrain/r2o_r50_imagenet_300ep.yaml \\
      data.root=/data/imagenet/train --workers 32
  python tools/cache_superpixels.py ... --shard 3/16                  # machine 3 of 16 fills its share
  torchrun --nnodes 16 --nproc-per-node 1 ... tools/cache_superpixels.py ...   # shard from RANK/WORLD_SIZE
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from r2o_pretrain.build import build_dataset, resolve_data_root
from r2o_pretrain.config import ConfigError, load_config
from r2o_pretrain.data.folder import DatasetError
from r2o_pretrain.data.prefill import prefill_superpixels, shard_indices

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_CONFIG = ROOT / "configs" / "pretrain" / "demo.yaml"


def parse_shard(text: str | None) -> tuple[int, int]:
    """'I/N' → (I, N); None → from torchrun's RANK/WORLD_SIZE, else (0, 1)."""
    if text is None:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like 3/16, got '{text}'") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= I < N")
    return i, n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="tools/cache_superpixels.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML file of settings (default: %(default)s)")
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores, %(default)s)"
    )
    p.add_argument("--shard", metavar="I/N", help="fill only every N-th file from the I-th (default: RANK/WORLD_SIZE)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. data.root=/data/imagenet/train")
    a = p.parse_args(argv)
    try:
        shard, num_shards = parse_shard(a.shard)
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))
    try:
        cfg = load_config(a.config, a.overrides)
        if not cfg.data.superpixel_cache:
            raise ConfigError("data.superpixel_cache is empty (the cache is off): set it to a folder to fill")
        dataset = build_dataset(cfg, resolve_data_root(cfg))
    except (ConfigError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = len(shard_indices(len(dataset), shard, num_shards))
    print(
        f"{total} of {len(dataset)} images (shard {shard}/{num_shards}) → {dataset.superpixels.directory} "
        f"(raw view {cfg.data.raw_size}px, {cfg.data.n_segments} segments), {a.workers} workers"
    )
    unreadable: list[str] = []
    start = time.perf_counter()
    with tqdm(total=total, unit="img", desc="superpixels") as bar:

        def on_item(status: str, message: str) -> None:
            if status == "unreadable":
                unreadable.append(message)
            bar.update()

        counts = prefill_superpixels(dataset, a.workers, shard, num_shards, on_item)
    seconds = time.perf_counter() - start
    for message in unreadable:
        print(f"skipped: {message}", file=sys.stderr)
    print(
        f"done in {seconds:.1f} s: {counts['computed']} computed, {counts['cached']} already cached, "
        f"{counts['converted']} converted from the earlier .npy format, "
        f"{counts['repaired']} corrupt entries recomputed, {counts['unreadable']} unreadable (skipped)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
