#!/usr/bin/env python
"""Ablation on the demo scenes: r2o vs detcon vs byol, same budget and seeds.

For each method and seed: pretrain (configs/pretrain/demo.yaml, EPOCHS epochs), then
  - unsupervised mIoU on the demo's single-object scenes (tools/eval_unsup_seg.py's metric, fg rule),
  - a quick transfer score: a linear per-pixel probe on frozen layer3 features, trained on the demo
    VOC export's train split and scored as mIoU (5 classes) on its val split.
A randomly initialised encoder is scored the same way as a floor. Reported as mean ± std over seeds.

  python benchmarks/ablation_demo.py [--epochs 4] [--seeds 0 1 2] [--out runs/ablation]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import table
from PIL import Image

from r2o_pretrain.config import load_config
from r2o_pretrain.data.device_augment import to_input_tensor
from r2o_pretrain.engine.trainer import train
from r2o_pretrain.eval.unsup_seg import evaluate, list_pairs
from r2o_pretrain.model.encoder import ResNetEncoder, load_encoder
from r2o_pretrain.scenes.demo import demo_dataset_ready, write_demo_dataset

ROOT = Path(__file__).resolve().parents[1]


def load_split(
    voc: Path, split: str, size: int, limit: int = 0, label_stride: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """VOC layout ``voc/{JPEGImages,SegmentationClass,ImageSets/Segmentation/SPLIT.txt}`` → (normalised
    float[N,3,S,S], labels int64[N,S/st,S/st] nearest-resized, st = ``label_stride``); ``limit`` > 0 keeps
    the first N images."""
    names = (voc / "ImageSets/Segmentation" / f"{split}.txt").read_text().split()
    names = names[:limit] if limit > 0 else names
    imgs, labels = [], []
    for n in names:
        rgb = np.asarray(Image.open(voc / "JPEGImages" / f"{n}.jpg").convert("RGB").resize((size, size), Image.BICUBIC))
        lab = np.asarray(
            Image.open(voc / "SegmentationClass" / f"{n}.png").resize(
                (size // label_stride, size // label_stride), Image.NEAREST
            )
        )
        imgs.append(to_input_tensor(rgb))
        labels.append(torch.from_numpy(lab.astype(np.int64)))
    return torch.stack(imgs), torch.stack(labels)


@torch.no_grad()
def _features(encoder: ResNetEncoder, x: torch.Tensor, layer: str = "c4") -> torch.Tensor:
    encoder.eval()
    device = next(encoder.parameters()).device
    fn = encoder.forward_c4 if layer == "c4" else (lambda b: encoder(b)[1])
    return torch.cat([fn(x[i : i + 32].to(device)).float().cpu() for i in range(0, len(x), 32)])


def mean_iou(ious: list[float]) -> float:
    """Mean of per-class IoUs, leaving out classes absent from both prediction and labels (nan)."""
    return float(np.mean([v for v in ious if v == v]))


def probe_ious(
    encoder: ResNetEncoder,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    classes: int,
    steps: int = 300,
    layer: str = "c4",
) -> list[float]:
    """Per-class IoU on ``val`` (nan where a class is in neither prediction nor labels) of a 1x1-conv
    classifier trained on frozen ``layer`` (c4 | c5) features of ``train`` (full batch, Adam; logits
    upsampled to the label map; label 255 ignored). ``mean_iou`` of it is the probe's mIoU."""
    (xt, yt), (xv, yv) = train, val
    ft, fv = _features(encoder, xt, layer), _features(encoder, xv, layer)
    mean, std = ft.mean((0, 2, 3), keepdim=True), ft.std((0, 2, 3), keepdim=True) + 1e-6
    ft, fv = (ft - mean) / std, (fv - mean) / std
    torch.manual_seed(0)
    head = torch.nn.Conv2d(ft.shape[1], classes, 1)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        logits = F.interpolate(head(ft), size=yt.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, yt, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = F.interpolate(head(fv), size=yv.shape[-2:], mode="bilinear", align_corners=False).argmax(1)
    valid = yv != 255
    ious = []
    for c in range(classes):
        p, g = (pred == c) & valid, (yv == c) & valid
        union = (p | g).sum().item()
        ious.append((p & g).sum().item() / union if union else float("nan"))
    return ious


def linear_probe_miou(encoder: ResNetEncoder, voc: Path, size: int = 192, classes: int = 5, steps: int = 300) -> float:
    """mIoU of a 1x1-conv classifier on frozen c4 features (logits upsampled to the label map)."""
    return mean_iou(probe_ious(encoder, load_split(voc, "train", size), load_split(voc, "val", size), classes, steps))


def score(encoder: ResNetEncoder, demo: Path, size: int) -> tuple[float, float]:
    pairs = list_pairs(demo / "fg_masks/images", demo / "fg_masks/masks").pairs
    unsup = evaluate(encoder, pairs, size=size, n_segments=50).rule.miou
    return unsup, linear_probe_miou(encoder, demo / "voc")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=["r2o", "detcon", "byol"])
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--demo-dir", default="data/demo")
    a = p.parse_args(argv)
    demo = Path(a.demo_dir)
    if not demo_dataset_ready(demo):
        write_demo_dataset(demo)
    config = ROOT / "configs/pretrain/demo.yaml"
    results: dict[str, list[tuple[float, float]]] = {}
    t0 = time.time()
    for method in a.methods:
        for seed in a.seeds:
            out = Path(a.out) / f"{method}_s{seed}"
            cfg = load_config(
                config,
                [
                    f"model.method={method}",
                    f"train.seed={seed}",
                    f"train.epochs={a.epochs}",
                    f"train.output_dir={out}",
                    "train.regions_png=false",
                    f"data.demo_dir={demo}",
                ],
            )
            result = train(cfg, resume="auto")
            enc = load_encoder(str(result.checkpoint))
            results.setdefault(method, []).append(score(enc, demo, cfg.data.raw_size))
            print(
                f"{method} seed {seed}: unsup mIoU {100 * results[method][-1][0]:.2f}, "
                f"probe mIoU {100 * results[method][-1][1]:.2f} ({time.time() - t0:.0f} s)",
                flush=True,
            )
    torch.manual_seed(0)
    results["random init"] = [score(ResNetEncoder(18), demo, 112)]

    def fmt(values: list[float]) -> str:
        m = 100 * statistics.mean(values)
        return f"{m:.2f} ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else f"{m:.2f}"

    rows = [[name, str(len(v)), fmt([u for u, _ in v]), fmt([q for _, q in v])] for name, v in results.items()]
    text = table(rows, ["method", "seeds", "unsup. mIoU (fg rule)", "linear probe mIoU (5 cls)"])
    budget = (
        f"budget: configs/pretrain/demo.yaml, ResNet-18, {a.epochs} epochs x 7 steps of 32 images "
        f"(view 96 px, raw 112 px), seeds {a.seeds}; {time.time() - t0:.0f} s in all"
    )
    print(text)
    print(budget)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "ablation.json").write_text(json.dumps({"results": results, "budget": budget}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
