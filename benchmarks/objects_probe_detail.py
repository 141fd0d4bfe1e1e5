#!/usr/bin/env python
"""What the object benchmark's probes see, per encoder: per-class IoU of the 14-class c4/c5 probe and the
foreground IoU of a 2-class (object vs background) probe — the diagnosis behind the objects table in docs/benchmarks.md.

  python benchmarks/objects_probe_detail.py [--data /work/data_objects] [--layers c4] \\
      random runs/objects_cpu/r2o_s0/checkpoints/last.pth runs/objects_cpu/r2o_s0/checkpoints/epoch_0001.pth

Same probe as benchmarks/objects_ablation.py (--preset cpu: 1,000 train scenes at 128 px, labels at 1/8,
300 full-batch Adam steps, val at 1/4). ``random`` is an untrained ResNet-18 (seed 0).
"""

from __future__ import annotations

import argparse
import copy
import itertools
from pathlib import Path

import torch
from ablation_demo import load_split, probe_ious
from objects_ablation import NUM_CLASSES, PRESETS
from torch.optim.swa_utils import update_bn

from r2o_pretrain.model.encoder import ResNetEncoder, load_encoder
from r2o_pretrain.scenes.objects import CLASSES


def foreground_only(split: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Class ids → 0 background / 1 any object (255 kept)."""
    x, y = split
    return x, torch.where(y == 255, y, (y > 0).long())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("encoders", nargs="+", help="'random' or checkpoint files")
    ap.add_argument("--data", default="/work/data_objects")
    ap.add_argument("--layers", nargs="+", default=["c4"], choices=["c4", "c5"])
    ap.add_argument(
        "--recalibrate-bn",
        action="store_true",
        help="also probe each encoder after re-estimating its BatchNorm statistics on the probe's train scenes"
        " (torch.optim.swa_utils.update_bn): do the scores come from the convolutions or from BN statistics?",
    )
    a = ap.parse_args(argv)
    p, data = PRESETS["cpu"], Path(a.data)
    train = load_split(data / "train", "train", p.eval_size, p.probe_train, p.probe_label_stride)
    val = load_split(data / "val", "val", p.eval_size)
    for spec in a.encoders:
        torch.manual_seed(0)
        encoder = ResNetEncoder(18) if spec == "random" else load_encoder(spec)
        variants = [(spec, encoder)]
        if a.recalibrate_bn:
            recalibrated = copy.deepcopy(encoder)
            update_bn(train[0].split(64), recalibrated)  # cumulative mean/var over all train scenes
            variants.append((f"{spec} (BN stats from probe-train)", recalibrated))
        for (name, enc), layer in itertools.product(variants, a.layers):
            probe(name, enc, layer, train, val, p.probe_steps)
    return 0


def probe(spec: str, encoder: ResNetEncoder, layer: str, train: tuple, val: tuple, steps: int) -> None:
    """Print the 14-class per-class IoUs and the fg/bg probe of ``encoder``'s ``layer`` features."""
    names = ["background", *CLASSES]
    ious = probe_ious(encoder, train, val, NUM_CLASSES, steps, layer)
    per_class = ", ".join(f"{n} {100 * v:.1f}" for n, v in zip(names, ious))
    fg = probe_ious(encoder, foreground_only(train), foreground_only(val), 2, steps, layer)
    print(f"{spec} {layer}: fg/bg probe: background {100 * fg[0]:.1f}, objects {100 * fg[1]:.1f}")
    print(f"{spec} {layer}: 14-class probe IoU: {per_class}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
