#!/usr/bin/env python
"""Write the bundled demo scenes (built only from scikit-image's own images; no downloads).

  python tools/make_demo_data.py data/demo [--train 240 --val 60 --fg 60 --size 192 --seed 0]

OUT_DIR/images, images_val (scenes), instances_{train,val}.json (COCO, exact RLE masks),
voc/ (JPEGImages, SegmentationClass palette PNGs with 255 borders, ImageSets/Segmentation/{train,val}.txt),
fg_masks/{images,masks} (single-object scenes with binary masks, for tools/eval_unsup_seg.py).
"""

from __future__ import annotations

import argparse
import sys

from r2o_pretrain.scenes.demo import write_demo_dataset


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--train", type=int, default=240, help="train scenes (default %(default)s)")
    p.add_argument("--val", type=int, default=60, help="val scenes (default %(default)s)")
    p.add_argument("--fg", type=int, default=60, help="single-object scenes (default %(default)s)")
    p.add_argument("--size", type=int, default=192, help="scene side in pixels (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if min(a.train, a.val, a.fg) < 1 or a.size < 32:
        p.error("--train/--val/--fg must be >= 1 and --size >= 32")
    out = write_demo_dataset(a.out_dir, a.train, a.val, a.fg, a.size, a.seed)
    print(f"wrote the demo scenes to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
