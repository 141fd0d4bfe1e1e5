"""Loader images/s per core: the authors'-equivalent pipeline against ours, on ImageNet-like JPEGs.

  python benchmarks/loader.py [--images 128] [--batches 6] [--repeats 3]   (or benchmarks/run.py --only loader)

"Per core" is one DataLoader worker process (the main process, which only collects the batches, runs on
another core). Pipelines, each run in turn within every repeat (median of the repeats):
- authors'-equivalent: torchvision's PIL transforms as their code runs them (RandomResizedCrop bicubic,
  flip, ColorJitter, RandomGrayscale, their cv2.GaussianBlur with a 23x23 kernel, RandomSolarize, ToTensor,
  Normalize; the raw view by Resize + ToTensor + Normalize) and SLIC for every sample on the normalised
  raw-view tensor (float64 HWC), as their loader does;
- ours, ``data.augment_on=device``: decode + crops + raw view + SLIC cache read in the worker, uint8 out;
  the photometric augmentation and normalisation run in the step on the GPU (``device_augment.py``);
- ours, ``data.augment_on=cpu``: the same plus the photometric augmentation with PIL in the worker.
Our SLIC cache is warm (filled before timing), as it is from the second epoch on or after
tools/cache_superpixels.py. ``stage_rows`` times each part of one sample in the worker's setting (one thread).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from imagenet_like import write_imagenet_like_jpegs
from PIL import Image, ImageFilter
from skimage.segmentation import slic
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision import transforms as T

from r2o_pretrain.data.dataset import PretrainDataset, collate
from r2o_pretrain.data.folder import open_rgb
from r2o_pretrain.data.photometric import blur_pil_image
from r2o_pretrain.data.superpixels import SuperpixelCache
from r2o_pretrain.data.views import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TwoViewTransform,
    _from_pil,
    _to_pil,
    photometric_augmentation,
    resize_bicubic,
)

TARGET_PER_CORE = 125.0  # 16 cores x 125 = 2,000 img/s, the rate expected of one H100 (an H200 measured ~1,100)
GPU_RATE = 1100.0  # R2O ResNet-50 224² bf16 + channels_last, img/s on one H200 (docs/benchmarks.md, GPU)
TARGET_RATIO = 6.0


class AuthorsEquivalent(Dataset):
    """The authors' loader, rebuilt from torchvision's transforms: PIL all the way, SLIC per sample."""

    def __init__(self, files: list[str], view: int = 224, raw: int = 224) -> None:
        self.files = files
        crop = [T.RandomResizedCrop(view, interpolation=T.InterpolationMode.BICUBIC), T.RandomHorizontalFlip()]
        self.views = [
            T.Compose([*crop, photometric_augmentation(b, s, blur="opencv")]) for b, s in ((1.0, 0.0), (0.1, 0.2))
        ]
        self.raw = T.Compose(
            [
                T.Resize((raw, raw), interpolation=T.InterpolationMode.BICUBIC),
                T.ToTensor(),
                T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        img = Image.open(self.files[index]).convert("RGB")
        views = torch.stack([t(img) for t in self.views])
        raw = self.raw(img)
        labels = slic(raw.permute(1, 2, 0).double().numpy(), n_segments=100, start_label=0)  # on the normalised tensor
        boxes = torch.zeros(2, 5)
        return {
            "views": views,
            "boxes": boxes,
            "raw": raw,
            "superpixels": torch.from_numpy(labels),
            "index": index,
            "skipped": [],
        }


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def images_per_second(dataset: Dataset, batch: int, batches: int, workers: int = 1) -> tuple[float, float]:
    """(images per wall second, images per CPU second of the worker processes) of a DataLoader with
    ``workers`` workers, after its first batch. On a loaded machine the wall rate falls with the load;
    the CPU-time rate is what one core would give if it were free (approximately: shared caches and
    frequency still slow it)."""
    # sampling with replacement: as many batches as asked for, whatever the number of files
    sampler = RandomSampler(dataset, replacement=True, num_samples=batch * (batches + 1 + 2 * workers))
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, collate_fn=collate)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    pids = [w.pid for w in getattr(it, "_workers", [])]
    cpu, t = _cpu_seconds(pids), time.perf_counter()
    n = sum(len(next(it)["index"]) for _ in range(batches))
    wall, cpu = time.perf_counter() - t, _cpu_seconds(pids) - cpu
    del it
    return n / wall, (n / cpu if cpu > 0 else float("nan"))


def best_ms(fn: Callable[[int], object], n: int, repeats: int = 3) -> float:
    """Best over ``repeats`` of the mean time of fn(0..n-1), in ms (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e3


def stage_rows(files: list[str], cache: SuperpixelCache, view: int = 224, raw: int = 224) -> list[list[str]]:
    """ms per image of each part of a sample, previous pipeline (PIL) and ours, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        n = len(files)
        imgs = [open_rgb(f) for f in files]
        pixels = [_from_pil(im) for im in imgs]
        crop_box = [
            (im.size[1] // 4, im.size[0] // 4, im.size[1] // 2, im.size[0] // 2) for im in imgs
        ]  # a typical crop
        small = [_to_pil(resize_bicubic(p, view)) for p in pixels]
        cj = T.ColorJitter(0.4, 0.4, 0.2, 0.1)
        norm = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        tv_blur = T.GaussianBlur(23, (0.1, 2.0))
        ours = TwoViewTransform(view, raw, augment_on="device")
        ours_cpu = TwoViewTransform(view, raw, augment_on="cpu")
        sp_raw = [np.asarray(ours.raw_view(im)) for im in imgs]
        for f, r in zip(files, sp_raw):
            cache.labels_for(f, r)
        parts = {
            "decode (PIL, full scale)": lambda i: open_rgb(files[i]),
            "crop+resize, PIL bicubic (per view)": lambda i: imgs[i].resize(
                (view, view),
                Image.BICUBIC,
                box=(crop_box[i][1], crop_box[i][0], 3 * crop_box[i][1], 3 * crop_box[i][0]),
            ),
            "crop+resize, torch uint8 bicubic aa (per view)": lambda i: resize_bicubic(
                pixels[i][:, crop_box[i][0] : 3 * crop_box[i][0], crop_box[i][1] : 3 * crop_box[i][1]], view
            ),
            "raw view, PIL bicubic": lambda i: imgs[i].resize((raw, raw), Image.BICUBIC),
            "raw view, torch uint8 bicubic aa": lambda i: resize_bicubic(pixels[i], raw),
            "colour jitter, PIL (per view)": lambda i: cj(small[i]),
            "grayscale, PIL (per view)": lambda i: small[i].convert("L").convert("RGB"),
            "blur, cv2.GaussianBlur 23x23 sigma 1 (authors', per view)": lambda i: blur_pil_image(small[i], 1.0),
            "blur, torchvision 23 taps on PIL (per view)": lambda i: tv_blur(small[i]),
            "blur, PIL GaussianBlur sigma 1 (per view)": lambda i: small[i].filter(ImageFilter.GaussianBlur(1.0)),
            "solarize, PIL (per view)": lambda i: T.functional.solarize(small[i], 128),
            "ToTensor+Normalize (per picture)": lambda i: norm(small[i]),
            "SLIC on the normalised raw view (authors: every sample)": lambda i: slic(
                norm(small[i]).permute(1, 2, 0).double().numpy(), n_segments=100, start_label=0
            ),
            "SLIC cache read (ours)": lambda i: cache.read(files[i], raw),
            "ours: whole sample, augment_on=device": lambda i: ours.load(files[i]),
            "ours: whole sample, augment_on=cpu": lambda i: ours_cpu.load(files[i]),
        }
        rows = []
        for name, fn in parts.items():
            reps = 1 if "SLIC on" in name or "torchvision" in name else 3
            rows.append(["loader stage, 1 thread, ms/img", name, f"{best_ms(fn, min(n, 32), reps):.2f} ms/img", ""])
        return rows
    finally:
        torch.set_num_threads(threads)


def run(
    images: int = 128,
    view: int = 224,
    raw: int = 224,
    batch: int = 32,
    batches: int = 6,
    repeats: int = 3,
    stages: bool = True,
) -> list[list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        files = [str(p) for p in write_imagenet_like_jpegs(root, images)]
        cache_dir = str(Path(tmp) / "cache")
        authors = AuthorsEquivalent(files, view, raw)
        ours = {
            mode: PretrainDataset(
                str(root), TwoViewTransform(view, raw, augment_on=mode), SuperpixelCache(cache_dir, 100)
            )
            for mode in ("device", "cpu")
        }
        for i in range(len(ours["cpu"])):  # the first epoch fills the cache; every later epoch reads it
            ours["cpu"][i]
        rates: dict[str, list[tuple[float, float]]] = {"authors": [], "device": [], "cpu": []}
        for _ in range(repeats):
            rates["authors"].append(images_per_second(authors, batch, max(1, batches // 3)))
            for mode, ds in ours.items():
                rates[mode].append(images_per_second(ds, batch, batches))
        rows = stage_rows(files[:32], SuperpixelCache(cache_dir, 100), view, raw) if stages else []
    wall = {k: statistics.median(r[0] for r in v) for k, v in rates.items()}
    cpu = {k: statistics.median(r[1] for r in v) for k, v in rates.items()}
    load = os.getloadavg()[0]
    what = f"loader, 1 worker, {images} JPEGs ~500x375 q90, views {view} + raw {raw}, load {load:.1f}/{os.cpu_count()}"
    names = {
        "authors": "authors'-equivalent (PIL transforms, cv2 blur, SLIC per sample)",
        "device": "ours, augment_on=device (decode, crops, cache read)",
        "cpu": "ours, augment_on=cpu (+ PIL photometric)",
    }
    for k, name in names.items():
        ratio = f"{wall[k] / wall['authors']:.2f}x wall, {cpu[k] / cpu['authors']:.2f}x cpu"
        rows.append([what, name, f"{wall[k]:.1f} img/s/core wall, {cpu[k]:.1f} per CPU-s", ratio])
    best = cpu["device"]
    rows.append(
        [
            f"{GPU_RATE:,.0f} img/s (one H200, R2O R50 bf16, measured)",
            "cores needed at the CPU-time rate, device / cpu",
            f"{GPU_RATE / best:.1f} / {GPU_RATE / cpu['cpu']:.1f} cores",
            f"ImageNet epoch on 16 cores: {1_281_167 / (16 * best) / 60:.1f} min (device)",
        ]
    )
    print(f"targets: >= {TARGET_PER_CORE:.0f} img/s/core, >= {TARGET_RATIO:.0f}x the authors'", file=sys.stderr)
    return rows


def scaling_rows(
    workers: list[int], images: int = 128, view: int = 224, raw: int = 224, batches: int = 6
) -> list[list[str]]:
    """Ours (augment_on=device, cache warm) with several worker processes: total wall img/s."""
    if not workers:
        return []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        write_imagenet_like_jpegs(root, images)
        ds = PretrainDataset(
            str(root), TwoViewTransform(view, raw, augment_on="device"), SuperpixelCache(str(Path(tmp) / "c"), 100)
        )
        for i in range(len(ds)):
            ds[i]
        for n in workers:
            wall, cpu = images_per_second(ds, 32, batches * n, workers=n)
            rows.append(
                [
                    f"ours, augment_on=device, {n} workers",
                    f"load {os.getloadavg()[0]:.1f}/{os.cpu_count()}",
                    f"{wall:.0f} img/s",
                    f"{wall / n:.0f} img/s/worker",
                ]
            )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=128)
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-stages", action="store_true")
    p.add_argument("--scaling", type=int, nargs="*", default=[], help="also ours (device) with these worker counts")
    a = p.parse_args()
    from common import table

    rows = run(a.images, batches=a.batches, repeats=a.repeats, stages=not a.no_stages)
    rows += scaling_rows(a.scaling, a.images, batches=a.batches)
    print(table(rows, ["measurement", "variant", "time / rate", "ratio"]))


if __name__ == "__main__":
    main()
