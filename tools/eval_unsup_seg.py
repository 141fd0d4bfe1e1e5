#!/usr/bin/env python
"""Unsupervised object segmentation (the CUB-200-2011 protocol) with a pretrained encoder, no training.

Per image: SLIC superpixels, the encoder's c4 features pooled per superpixel, k-means with K=2; the
foreground is the cluster touching the image border least (the oracle picks the better of the two
assignments against the ground truth, an upper bound). Prints fg IoU and mIoU (mean of fg and bg IoU,
averaged over images) for the checkpoint, for a randomly initialised encoder of the same depth and for
the colour-only baseline (the same k-means on each superpixel's mean Lab colour; --no-colour skips it),
measured in the same run. The last line is `mIoU <value>` of the checkpoint with the fg rule.

Layouts:
  CUB-200-2011: --images CUB_200_2011/images --masks segmentations  (images.txt and train_test_split.txt
                beside images/; soft masks thresholded at 0.5; --split test|train|all)
  plain:        --images DIR --masks DIR   (PNG masks with the image's file stem: binary 0/1 or 0/255,
                soft greyscale thresholded at half scale, greyscale label maps such as VOC's
                SegmentationClassAug by value (ids foreground, 0 and 255 not); palette PNGs by index, so a VOC tree works as
                --images VOC2012/JPEGImages --masks VOC2012/SegmentationClass: objects = foreground,
                0 and the 255 void border = background, images without a mask are counted and left
                out; colour-coded masks: non-black = foreground)

  python tools/eval_unsup_seg.py --checkpoint runs/demo/checkpoints/last.pth \\
      --images data/demo/fg_masks/images --masks data/demo/fg_masks/masks --size 112

Exit codes: 0 evaluated; 2 unusable input (no pairs, unreadable checkpoint).
"""

from __future__ import annotations

import argparse
import sys

import torch
from tqdm import tqdm

from r2o_pretrain.eval.unsup_seg import EvalDataError, evaluate, list_pairs
from r2o_pretrain.model.encoder import ResNetEncoder, load_encoder
from r2o_pretrain.weights import ConversionError

SHOWN_PROBLEMS = 10  # listing problems printed one per line; the rest are counted


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="tools/eval_unsup_seg.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", required=True, help="any R2O / torchvision ResNet checkpoint or detectron2 .pkl")
    p.add_argument("--images", required=True)
    p.add_argument("--masks", required=True)
    p.add_argument("--size", type=int, default=224, help="images are resized to SIZE x SIZE (default %(default)s)")
    p.add_argument("--n-segments", type=int, default=100, help="SLIC segments (default %(default)s)")
    p.add_argument("--encoder", choices=["online", "target"], default="online")
    p.add_argument("--split", choices=["test", "train", "all"], default="test", help="CUB split (default test)")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N pairs (0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random baseline encoder")
    p.add_argument("--no-colour", action="store_true", help="skip the colour-only (mean Lab per superpixel) row")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow checkpoints that need full unpickling (can run code: trusted files only)",
    )
    a = p.parse_args(argv)
    try:
        encoder = load_encoder(a.checkpoint, a.encoder, a.allow_pickle)
        listing = list_pairs(a.images, a.masks, a.split)
    except (ConversionError, EvalDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in listing.problems[:SHOWN_PROBLEMS]:
        print(f"warning: {problem}", file=sys.stderr)
    if len(listing.problems) > SHOWN_PROBLEMS:  # e.g. a VOC tree: 17,125 JPEGImages, 2,913 with a mask
        print(
            f"warning: ... and {len(listing.problems) - SHOWN_PROBLEMS} more such problems; they are left out",
            file=sys.stderr,
        )
    pairs = listing.pairs[: a.limit] if a.limit > 0 else listing.pairs
    if not pairs:
        print(f"error: no image/mask pairs under {a.images} and {a.masks}", file=sys.stderr)
        return 2
    torch.manual_seed(a.seed)
    baseline = ResNetEncoder(encoder.depth)
    rows = []
    nets = [("checkpoint", encoder), ("random init", baseline)] + ([] if a.no_colour else [("colour (Lab)", None)])
    for name, net in nets:
        res = evaluate(net, pairs, a.size, a.n_segments, progress=lambda xs, n=name: tqdm(xs, desc=n, leave=False))
        for problem in res.skipped if name == "checkpoint" else []:
            print(f"warning: skipped: {problem}", file=sys.stderr)
        if name == "checkpoint" and res.empty_masks:
            print(
                f"warning: {res.empty_masks} of {len(res.rule.fg)} masks have no foreground as read at {a.size} px; "
                "check their format (docs/pretraining.md, Online evaluation: Masks)",
                file=sys.stderr,
            )
        rows.append((name, res))
    n = len(rows[0][1].rule.fg)
    print(f"unsupervised object segmentation: {n} images, {a.size}x{a.size}, ResNet-{encoder.depth} ({a.checkpoint})")
    print(f"{'encoder':<12} {'fg rule: fg IoU':>16} {'mIoU':>7}   {'oracle: fg IoU':>15} {'mIoU':>7}")
    for name, res in rows:
        print(
            f"{name:<12} {100 * res.rule.fg_iou:16.2f} {100 * res.rule.miou:7.2f}   "
            f"{100 * res.oracle.fg_iou:15.2f} {100 * res.oracle.miou:7.2f}"
        )
    print(f"mIoU {100 * rows[0][1].rule.miou:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
