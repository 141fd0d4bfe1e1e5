#!/usr/bin/env python
"""Picture what the region refiner sees: image | superpixels | refined masks at several K.

  python tools/visualize_regions.py --checkpoint runs/demo/checkpoints/last.pth \\
      data/demo/images/train_000*.jpg --out regions.png [--ks 128 32 8 4] [--size 224]

Across the curriculum: give the checkpoints kept at the end of each epoch (train.keep_every_epochs=1)
and leave out --ks; each checkpoint is drawn at the K its run used in that epoch:

  python tools/visualize_regions.py --run runs/r2o --out curriculum.png --size 112 --n-segments 50 IMAGES...

(--run DIR takes DIR/checkpoints/epoch_*.pth; --checkpoint may also be given several times.)

K runs along the curriculum (many small regions early, few object-sized ones late); the clustering
is over all superpixels of the given images together, as in training. With --ks every checkpoint is
drawn at each K; without it, training checkpoints use their epoch's K and other files 128 32 8 4.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from r2o_pretrain.config import Config, apply_dict
from r2o_pretrain.data.folder import BadImageError, open_rgb
from r2o_pretrain.data.superpixels import slic_labels
from r2o_pretrain.data.views import TwoViewTransform
from r2o_pretrain.model.encoder import load_encoder
from r2o_pretrain.schedules import plan_from_config
from r2o_pretrain.viz import denormalize, refined_label_maps, region_grid, save_png
from r2o_pretrain.weights import ConversionError
from r2o_pretrain.weights.checkpoint_file import PRETRAIN_FORMAT
from r2o_pretrain.weights.files import read_weights_file

DEFAULT_KS = (128, 32, 8, 4)


def curriculum_point(path: str) -> tuple[int, int] | None:
    """(epoch of its last step, K of that epoch) of a tools/pretrain.py checkpoint, from the config it
    holds; None for other files. Read with weights_only (never runs code)."""
    state = read_weights_file(path)
    if not isinstance(state, dict) or state.get("format") != PRETRAIN_FORMAT:
        return None
    cfg = apply_dict(Config(), state["config"], source=str(path))
    step, spe = int(state["step"]), int(state.get("steps_per_epoch", 0))
    # the epoch the last step ran in (checkpoints before steps_per_epoch was stored: finished epochs)
    epoch = (step - 1) // spe + 1 if spe and step else max(int(state["epoch"]), 1)
    return epoch, plan_from_config(cfg, num_examples=1, world_size=1).k_of_epoch(epoch)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="tools/visualize_regions.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("images", nargs="+", help="image files (one row each)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--checkpoint",
        action="append",
        help="any R2O / torchvision ResNet checkpoint; repeat it to draw several side by side",
    )
    which.add_argument(
        "--run",
        help="a tools/pretrain.py output folder: its checkpoints/epoch_*.pth (train.keep_every_epochs), in order",
    )
    p.add_argument("--out", default="regions.png")
    p.add_argument(
        "--ks",
        type=int,
        nargs="+",
        default=None,
        help="K values for every checkpoint (default: a training checkpoint's own epoch K, else 128 32 8 4)",
    )
    p.add_argument("--size", type=int, default=224, help="raw view size (default %(default)s)")
    p.add_argument("--n-segments", type=int, default=100)
    p.add_argument(
        "--encoder",
        choices=["online", "target"],
        default="target",
        help="the target encoder drives refinement in training (default)",
    )
    a = p.parse_args(argv)
    checkpoints = a.checkpoint or sorted(str(f) for f in (Path(a.run) / "checkpoints").glob("epoch_*.pth"))
    if not checkpoints:
        print(
            f"error: no epoch_NNNN.pth in {Path(a.run) / 'checkpoints'}: pretrain with train.keep_every_epochs=1 "
            "to keep one per epoch, or pass --checkpoint FILE",
            file=sys.stderr,
        )
        return 2
    try:
        rgbs = [open_rgb(path) for path in a.images]
    except BadImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    view = TwoViewTransform(raw_size=a.size)
    raws = [view.raw_view(img) for img in rgbs]
    raw = torch.stack([view.normalize(r) for r in raws])
    sp = torch.stack([torch.from_numpy(slic_labels(np.asarray(r), a.n_segments)) for r in raws])
    maps = []
    for path in checkpoints:
        try:
            encoder = load_encoder(path, a.encoder)
            point = curriculum_point(path)
        except ConversionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        ks = a.ks or ([point[1]] if point else list(DEFAULT_KS))
        title = f"epoch {point[0]} " if point and len(checkpoints) > 1 else ""
        maps += refined_label_maps(encoder, raw, sp, ks, title=title)
    out = save_png(region_grid(denormalize(raw), sp.numpy(), maps), a.out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
