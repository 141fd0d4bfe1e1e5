#!/usr/bin/env python
"""What one training step costs: FLOPs (``torch.utils.flop_counter``, forward + backward) and CPU step time
of BYOL and R2O at K = 128 / 64 / 16 / 4, with the heads on all 2B·K mask rows (``model.sparse_heads=false``,
the authors') and on the non-empty rows (the default), and the FLOP average over the ImageNet schedule
(K of each of 300 epochs by the authors' quarter cosine, 128 → 4). BYOL is measured in the same run and
every ratio is against it. Optionally (``--parts memory``) the peak memory of the heads alone at K = 128.

  python benchmarks/step_cost.py [--depth 50 --size 224 --batch 8 --hidden 4096] [--time-steps 2]
                                 [--parts flops time memory] [--memory-batches 32 256]
                                 [--out benchmarks/results/step_cost]

The batch is ``--batch`` of scikit-image's bundled photos (benchmarks/imagenet_like.py) through the
loader's transform (two views, raw view) with SLIC superpixels (100 segments), so the share of empty mask
rows is that of real pictures. FLOP counts are deterministic; the schedule average interpolates linearly
in K between the measured K values (``--schedule-ks`` adds points). CPU times: median of ``--time-steps``
interleaved steps (EMA + forward + backward + LARS) after one warm-up, on whatever load the machine has.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from common import interleaved_median_times, table
from imagenet_like import bundled_photos
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from r2o_pretrain.data.dataset import collate
from r2o_pretrain.data.device_augment import batch_on_device
from r2o_pretrain.data.superpixels import slic_labels
from r2o_pretrain.data.views import TwoViewTransform
from r2o_pretrain.model.heads import MLP, apply_heads
from r2o_pretrain.model.masks import view_masks
from r2o_pretrain.model.r2o import R2O
from r2o_pretrain.optim import build_optimizer
from r2o_pretrain.schedules import curriculum_k

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE = dict(schedule="cosine", epoch_range=(0, 300), k_range=(128, 4))  # the authors' ImageNet run


def photo_batch(b: int, size: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(views float[B,2,3,S,S], boxes float[B,2,5], raw float[B,3,S,S], superpixels int64[B,S,S]) of the
    bundled photos, as the loader makes them (photos repeat, with other crops, past the 8 there are)."""
    photos = bundled_photos()
    transform = TwoViewTransform(view_size=size, raw_size=size)
    samples = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(b):
            sample = transform(Image.fromarray(photos[i % len(photos)]))
            sample["superpixels"] = torch.from_numpy(slic_labels(sample.pop("raw_rgb")))
            samples.append({**sample, "index": i, "skipped": []})
    return batch_on_device(collate(samples), "cpu")


def schedule_ks(epochs: int = 300) -> list[int]:
    """K of every epoch 1..epochs of the authors' ImageNet curriculum (127 at epoch 1, 4 at the end)."""
    return [curriculum_k(e, **SCHEDULE) for e in range(1, epochs + 1)]


def build(method: str, depth: int, hidden: int, sparse: bool) -> R2O:
    torch.manual_seed(0)
    return R2O(depth=depth, method=method, projector_hidden=hidden, predictor_hidden=hidden, sparse_heads=sparse)


def step_flops(model: R2O, batch: tuple[torch.Tensor, ...], k: int) -> int:
    """FLOPs of one forward + backward (no EMA, so that repeated counts see the same target and masks)."""
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        out = model(*batch, k, torch.Generator().manual_seed(0))
        out.loss.backward()
    return counter.get_total_flops()


def empty_row_fraction(model: R2O, batch: tuple[torch.Tensor, ...], k: int) -> float:
    """Share of the 2B·K online mask rows that are all zero (what the sparse heads skip)."""
    views, boxes, raw, sp = batch
    with torch.no_grad():
        labels, num, _ = copy.deepcopy(model).region_labels(raw, sp, k, raw.shape[-1] // 4, torch.Generator())
    masks = view_masks(labels, boxes, num, views.shape[-1] // 32)
    return (~masks.ne(0).any(-1)).float().mean().item()


def make_step(model: R2O, batch: tuple[torch.Tensor, ...], k: int, sparse: bool = True):
    """One training step (EMA, forward, backward, LARS) of ``model`` at K with the heads as asked."""
    opt = build_optimizer(model.online_modules())
    for group in opt.param_groups:
        group["lr"] = 0.01

    def step() -> None:
        model.sparse_heads = sparse
        out = model(*batch, k, torch.Generator().manual_seed(0), tau=0.99)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    return step


def heads_peak_memory(batch: int, k: int, hidden: int, sparse: bool, empty: float, c5: int = 2048) -> dict:
    """In a child process: peak RSS of the heads alone (online projector + predictor with backward, target
    projector without) on float[2B,K,c5] pooled rows of which ``empty`` are zero, minus the resident set
    before they ran (inputs and weights already allocated; the peak is reset there through
    /proc/self/clear_refs, so the imports' peak does not count). Linux only."""
    code = f"""
import torch, sys
sys.path.insert(0, {str(ROOT)!r})
from r2o_pretrain.model.heads import MLP, apply_heads
torch.manual_seed(0)
b, k, hidden, c5 = {batch}, {k}, {hidden}, {c5}
online = [MLP(c5, hidden, 256), MLP(256, hidden, 256)]
target = MLP(c5, hidden, 256)
g = torch.Generator().manual_seed(0)
occupied = torch.rand(2 * b, k, generator=g) >= {empty}
x = torch.randn(2 * b, k, c5, generator=g) * occupied[..., None]
def status_kb(key):
    return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the resident set now
before = status_kb("VmRSS")
o = occupied if {sparse} else None
proj, pred = apply_heads(x.requires_grad_(), online, o)
with torch.no_grad():
    (z,) = apply_heads(x, [target], o)
((pred - z) ** 2 * occupied[..., None]).sum().backward()
peak = status_kb("VmHWM")
print(before, peak)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    before, peak = int(out[0]), int(out[1])
    return {"before_mb": before / 1024, "peak_mb": peak / 1024, "heads_mb": (peak - before) / 1024}


def heads_times(batch: int, k: int, hidden: int, empty: float, repeats: int, c5: int = 2048) -> dict[str, float]:
    """Median seconds of the heads alone (as ``heads_peak_memory`` runs them), dense and sparse interleaved."""
    torch.manual_seed(0)
    online = [MLP(c5, hidden, 256), MLP(256, hidden, 256)]
    target = MLP(c5, hidden, 256)
    g = torch.Generator().manual_seed(0)
    occupied = torch.rand(2 * batch, k, generator=g) >= empty
    x = (torch.randn(2 * batch, k, c5, generator=g) * occupied[..., None]).requires_grad_()

    def run(sparse: bool):
        def step() -> None:
            rows = occupied if sparse else None
            _, pred = apply_heads(x, online, rows)
            with torch.no_grad():
                (z,) = apply_heads(x, [target], rows)
            ((pred - z) ** 2 * occupied[..., None]).sum().backward()

        return step

    return interleaved_median_times({"dense": run(False), "sparse": run(True)}, repeats=repeats, warmup=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--size", type=int, default=224, help="view and raw-view size")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--hidden", type=int, default=4096, help="projector/predictor hidden width")
    p.add_argument("--ks", type=int, nargs="+", default=[128, 64, 16, 4], help="K values of the table")
    p.add_argument("--schedule-ks", type=int, nargs="*", default=[96, 32, 8], help="more K for the schedule")
    p.add_argument("--time-steps", type=int, default=2, help="timed CPU steps per setting")
    p.add_argument(
        "--parts",
        nargs="+",
        choices=["flops", "time", "memory", "heads-time"],
        default=["flops", "time"],
        help="what to measure (memory / heads-time: peak RSS / CPU time of the heads alone at K=128)",
    )
    p.add_argument("--memory-batches", type=int, nargs="+", default=[32, 256])
    p.add_argument("--heads-repeats", type=int, default=7, help="heads-time: interleaved repeats")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/step_cost"), help="writes OUT.json, OUT.md")
    a = p.parse_args(argv)
    parts = set(a.parts)

    batch = photo_batch(a.batch, a.size)
    byol = build("byol", a.depth, a.hidden, sparse=True)
    r2o = build("r2o", a.depth, a.hidden, sparse=True)
    ks = sorted(set(a.ks) | (set(a.schedule_ks) if "flops" in parts else set()), reverse=True)
    empty = {k: empty_row_fraction(r2o, batch, k) for k in sorted(set(ks) | {128}, reverse=True)}
    flops: dict[str, dict[int, int]] = {"dense": {}, "sparse": {}}
    byol_flops, schedule = None, {}
    epochs_k = schedule_ks()
    if "flops" in parts:
        byol_flops = step_flops(byol, batch, 1)
        for k in ks:
            for heads in ("dense", "sparse"):
                r2o.sparse_heads = heads == "sparse"
                flops[heads][k] = step_flops(r2o, batch, k)
            print(
                f"K={k}: empty rows {empty[k]:.2f}, dense {flops['dense'][k] / byol_flops:.3f}x, "
                f"sparse {flops['sparse'][k] / byol_flops:.3f}x BYOL",
                flush=True,
            )
        grid = np.array(sorted(ks), dtype=float)
        for heads in ("dense", "sparse"):
            values = np.array([flops[heads][int(k)] for k in grid], dtype=float)
            per_epoch = np.interp(np.array(epochs_k, dtype=float), grid, values)
            schedule[heads] = float(per_epoch.mean() / byol_flops)

    times: dict[str, float] = {}
    if "time" in parts:  # one R2O model for all settings (the cost does not depend on where its weights are)
        steps = {"byol": make_step(byol, batch, 1)}
        for k in a.ks:
            for heads in ("dense", "sparse"):
                steps[f"r2o K={k} {heads}"] = make_step(r2o, batch, k, sparse=heads == "sparse")
        times = interleaved_median_times(steps, repeats=a.time_steps, warmup=1)

    setting = (
        f"ResNet-{a.depth}, views and raw view {a.size}px, heads {a.hidden}/256, batch {a.batch} of real photos "
        f"with SLIC, fp32, CPU {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at the end"
    )
    md = [f"Step cost, {setting}; one run (BYOL measured in it)."]
    if flops["dense"] or times:
        md += ["", cost_table(a.ks, empty, byol_flops, flops, schedule, epochs_k, times)]

    memory = {}
    if "memory" in parts:
        k = 128
        mrows = []
        for b in a.memory_batches:
            for heads in ("dense", "sparse"):
                memory[f"B={b} {heads}"] = heads_peak_memory(b, k, a.hidden, heads == "sparse", empty[k])
                print(f"memory B={b} {heads}: {memory[f'B={b} {heads}']}", flush=True)
            d, s = memory[f"B={b} dense"], memory[f"B={b} sparse"]
            mrows.append(
                [
                    str(b),
                    str(k),
                    f"{empty[k]:.0%}",
                    f"{d['heads_mb']:.0f}",
                    f"{s['heads_mb']:.0f}",
                    f"{s['heads_mb'] / max(d['heads_mb'], 1):.2f}",
                ]
            )
        md += [
            "",
            f"Peak memory of the heads alone (projector + predictor forward/backward, target projector), K={k}, "
            f"heads {a.hidden}/256, fp32, rows empty at random with the photo batch's share: peak RSS of a child "
            "process minus its resident set just before the heads ran (MB).",
            "",
            table(mrows, ["batch", "K", "empty rows", "dense MB", "sparse MB", "sparse / dense"]),
        ]

    heads_time = {}
    if "heads-time" in parts:
        heads_time = heads_times(a.batch, 128, a.hidden, empty[128], a.heads_repeats)
        md += [
            "",
            f"Heads alone (as for the memory), batch {a.batch}, K=128, {empty[128]:.0%} empty rows, median of "
            f"{a.heads_repeats} interleaved repeats: dense {heads_time['dense'] * 1000:.0f} ms, sparse "
            f"{heads_time['sparse'] * 1000:.0f} ms ({heads_time['sparse'] / heads_time['dense']:.2f}x).",
        ]

    text = "\n".join(md)
    print(text)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    result = {
        "setting": setting,
        "byol_flops": byol_flops,
        "flops": flops,
        "empty_rows": empty,
        "schedule_average": schedule,
        "schedule_ks": sorted(ks),
        "cpu_seconds": times,
        "heads_memory": memory,
        "heads_seconds": heads_time,
    }
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


def cost_table(ks, empty, byol_flops, flops, schedule, epochs_k, times) -> str:
    """The markdown table: FLOPs and CPU seconds per step, and their ratios to BYOL's."""

    def ratio(x, base):
        return f"{x / base:.2f}x" if x and base else "-"

    rows = [
        [
            "BYOL",
            "-",
            "-",
            f"{byol_flops / 1e9:.0f}" if byol_flops else "-",
            "1.00x",
            "-",
            "-",
            f"{times['byol']:.1f}" if times else "-",
            "1.00x" if times else "-",
            "-",
        ]
    ]
    for k in ks:
        fd, fs = flops["dense"].get(k), flops["sparse"].get(k)
        td, ts = times.get(f"r2o K={k} dense"), times.get(f"r2o K={k} sparse")
        rows.append(
            [
                "R2O",
                str(k),
                f"{empty[k]:.0%}",
                f"{fd / 1e9:.0f} → {fs / 1e9:.0f}" if fd else "-",
                ratio(fd, byol_flops),
                ratio(fs, byol_flops),
                f"{fs / fd:.2f}" if fd else "-",
                f"{td:.1f} → {ts:.1f}" if td else "-",
                ratio(td, times.get("byol")),
                ratio(ts, times.get("byol")),
            ]
        )
    if schedule:
        rows.append(
            [
                "R2O, ImageNet schedule average",
                f"127→4 (mean {np.mean(epochs_k):.0f})",
                "-",
                "-",
                f"{schedule['dense']:.2f}x",
                f"{schedule['sparse']:.2f}x",
                f"{schedule['sparse'] / schedule['dense']:.2f}",
                "-",
                "-",
                "-",
            ]
        )
    header = [
        "method",
        "K",
        "empty rows",
        "GFLOP dense → sparse",
        "FLOPs dense / BYOL",
        "FLOPs sparse / BYOL",
        "sparse / dense",
        "CPU s dense → sparse",
        "time dense / BYOL",
        "time sparse / BYOL",
    ]
    return table(rows, header)


if __name__ == "__main__":
    sys.exit(main())
