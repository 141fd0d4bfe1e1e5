"""Data loader images/s: an official-equivalent pipeline (PIL ops + SLIC per sample) vs ours (cached SLIC)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from r2o_pretrain.data.dataset import PretrainDataset, build_loader
from r2o_pretrain.data.demo_scenes import demo_dataset_ready, write_demo_dataset
from r2o_pretrain.data.superpixels import SuperpixelCache
from r2o_pretrain.data.views import TwoViewTransform


def images_per_second(dataset: PretrainDataset, batch: int, workers: int, batches: int) -> float:
    loader, sampler = build_loader(dataset, batch, workers, seed=0)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    t = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += len(next(it)["index"])
    return n / (time.perf_counter() - t)


def run(
    demo_dir: str = "data/demo", view: int = 224, raw: int = 224, batch: int = 16, workers: int = 2, batches: int = 8
) -> list[list[str]]:
    if not demo_dataset_ready(demo_dir):
        write_demo_dataset(demo_dir)
    root = str(Path(demo_dir) / "images")
    # official-equivalent: torchvision's 23-tap GaussianBlur on PIL images and SLIC for every sample
    official = PretrainDataset(root, TwoViewTransform(view, raw, blur="torchvision"), SuperpixelCache(None, 100))
    with tempfile.TemporaryDirectory() as tmp:
        ours = PretrainDataset(root, TwoViewTransform(view, raw), SuperpixelCache(tmp, 100))
        for i in range(len(ours)):  # the first epoch fills the cache; every later epoch reads it
            ours[i]
        ips_off = images_per_second(official, batch, workers, batches)
        ips_ours = images_per_second(ours, batch, workers, batches)
    what = f"loader, {workers} workers, batch {batch}, views {view}px + raw {raw}px"
    return [
        [what, "PIL ops, torchvision blur, SLIC per sample (official)", f"{ips_off:.1f} img/s", "1.00x (baseline)"],
        [
            what,
            "ours (PIL blur, SLIC cache warm)",
            f"{ips_ours:.1f} img/s",
            f"{ips_ours / ips_off:.2f}x (target >= 3x)",
        ],
    ]
