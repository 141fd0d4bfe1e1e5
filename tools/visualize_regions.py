#!/usr/bin/env python
"""Picture what the region refiner sees: image | superpixels | refined masks at several K.

  python tools/visualize_regions.py --checkpoint runs/demo/checkpoints/last.pth \\
      data/demo/images/train_000*.jpg --out regions.png [--ks 128 32 8 4] [--size 224]

K runs along the curriculum (many small regions early, few object-sized ones late); the clustering
is over all superpixels of the given images together, as in training.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from r2o_pretrain.data.folder import BadImageError, open_rgb
from r2o_pretrain.data.superpixels import slic_labels
from r2o_pretrain.data.views import TwoViewTransform
from r2o_pretrain.model.encoder import load_encoder
from r2o_pretrain.viz import regions_picture, save_png
from r2o_pretrain.weights import ConversionError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="tools/visualize_regions.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("images", nargs="+", help="image files (one row each)")
    p.add_argument("--checkpoint", required=True, help="any R2O / torchvision ResNet checkpoint")
    p.add_argument("--out", default="regions.png")
    p.add_argument("--ks", type=int, nargs="+", default=[128, 32, 8, 4], help="K values (default 128 32 8 4)")
    p.add_argument("--size", type=int, default=224, help="raw view size (default %(default)s)")
    p.add_argument("--n-segments", type=int, default=100)
    p.add_argument(
        "--encoder",
        choices=["online", "target"],
        default="target",
        help="the target encoder drives refinement in training (default)",
    )
    a = p.parse_args(argv)
    try:
        encoder = load_encoder(a.checkpoint, a.encoder)
        rgbs = [open_rgb(path) for path in a.images]
    except (ConversionError, BadImageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    view = TwoViewTransform(raw_size=a.size)
    raws = [view.raw_view(img) for img in rgbs]
    raw = torch.stack([view.normalize(r) for r in raws])
    sp = torch.stack([torch.from_numpy(slic_labels(np.asarray(r), a.n_segments)) for r in raws])
    out = save_png(regions_picture(encoder, raw, sp, a.ks), a.out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
