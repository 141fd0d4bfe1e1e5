#!/usr/bin/env python
"""``data.augment_on=device`` on a GPU: images/s of ``batch_on_device`` (pinned uint8 batch → normalised,
photometrically augmented float views), against normalising only and against torchvision's v2 functional
ops called per sample (what per-sample parameters cost without batched ops); plus CUDA-vs-CPU agreement.

  python benchmarks/gpu_augment.py [--batch 256] [--size 224]     (needs a GPU; part of gpu_check.sh)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from r2o_pretrain.data import photometric as P
from r2o_pretrain.data.device_augment import (
    augment_batch,
    augment_per_sample_torchvision,
    batch_on_device,
)


def make_batch(b: int, s: int) -> dict:
    torch.manual_seed(0)
    base = torch.linspace(0, 255, s).view(1, 1, s, 1) * torch.rand(b, 2, 1, 1, 3)  # smooth, varied pictures
    views = (base + base.transpose(2, 3)).clamp(0, 255).to(torch.uint8)  # [B,2,S,S,3]
    return {
        "views": views.permute(0, 1, 4, 2, 3).pin_memory(),  # channels-last strides, as the loader sends them
        "raw": views[:, 0].permute(0, 3, 1, 2).pin_memory(),
        "boxes": torch.rand(b, 2, 5).pin_memory(),
        "superpixels": torch.randint(0, 100, (b, s, s)).pin_memory(),
        "photometric": torch.stack([P.sample_two_views() for _ in range(b)]),
    }


def timed(fn, repeats: int = 10, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=224)
    a = p.parse_args()
    if not torch.cuda.is_available():
        print("no GPU: nothing measured")
        return 0
    dev = torch.device("cuda")
    batch = make_batch(a.batch, a.size)
    plain = {k: v for k, v in batch.items() if k != "photometric"}
    t_aug = timed(lambda: batch_on_device(batch, dev, non_blocking=True))
    t_norm = timed(lambda: batch_on_device(plain, dev, non_blocking=True))
    flat = batch["views"].flatten(0, 1)[:64].to(dev).float().div(255)
    params = batch["photometric"].flatten(0, 1)[:64]
    t_loop = timed(lambda: augment_per_sample_torchvision(flat, params), repeats=3, warmup=1)
    t_batched = timed(lambda: augment_batch(flat, params), repeats=3, warmup=1)
    cpu = augment_batch(flat[:8].cpu(), params[:8])
    gpu = augment_batch(flat[:8], params[:8]).cpu()
    loop = augment_per_sample_torchvision(flat[:8], params[:8]).cpu()
    print(f"GPU: {torch.cuda.get_device_name()}, batch {a.batch} x (2 views + raw) at {a.size}²")
    print(f"batch_on_device with augmentation : {t_aug * 1e3:7.2f} ms/batch = {a.batch / t_aug:8.0f} img/s")
    print(f"batch_on_device, normalise only   : {t_norm * 1e3:7.2f} ms/batch = {a.batch / t_norm:8.0f} img/s")
    print(f"64 views, batched ops             : {t_batched * 1e3:7.2f} ms")
    print(f"64 views, torchvision v2 per view : {t_loop * 1e3:7.2f} ms ({t_loop / t_batched:.1f}x the batched ops)")
    print(f"CUDA vs CPU, same params: max |diff| {(gpu - cpu).abs().max():.2e} (in [0,1] units)")
    print(f"batched vs torchvision per view: max |diff| {(gpu - loop).abs().max():.2e} (in [0,1] units)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
