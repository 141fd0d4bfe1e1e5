#!/usr/bin/env python
"""Write the real-photo object scenes: Tux Paint photo cut-outs pasted on crops of real photographs.

  scripts/get_object_assets.sh                       # once: the Debian assets into ~/.cache/r2o/assets
  python tools/make_objects_data.py /work/data_objects [--assets DIR] [--size 160] [--seed 0] [--num-pretrain 10000]

OUT/pretrain/images (unlabelled scenes), OUT/{train,val}/ (JPEGImages, SegmentationClass palette PNGs with
255 borders, ImageSets/Segmentation/{split}.txt, instances.json COCO with polygons), OUT/val_single/{images,masks}
(one-object scenes for tools/eval_unsup_seg.py), OUT/objects.json (stamps per split, counts, timings).
Stamps, categories, mask and split rules: r2o_pretrain/scenes/objects.py. Readers, unchanged:
  python tools/train_net.py ... --coco-dataset objects_train OUT/train/instances.json OUT/train/JPEGImages
  R2O_DATA_ROOT=OUT mim train mmseg configs/r2o_fcn_objects.py
  python tools/eval_unsup_seg.py --checkpoint CKPT --images OUT/val_single/images --masks OUT/val_single/masks

Exit codes: 0 written; 2 assets missing (the message says which and what to run).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from r2o_pretrain.scenes.objects import AssetsError, write_objects_dataset

DEFAULT_ASSETS = Path(os.environ.get("R2O_CACHE_DIR", Path.home() / ".cache/r2o")) / "assets"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument(
        "--assets", default=str(DEFAULT_ASSETS), help="scripts/get_object_assets.sh's folder (default %(default)s)"
    )
    p.add_argument("--size", type=int, default=160, help="scene side in pixels (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="scenes and the train/val split of stamps (default %(default)s)")
    p.add_argument("--num-pretrain", type=int, default=10000, help="unlabelled scenes (default %(default)s)")
    p.add_argument("--num-train", type=int, default=2000, help="labelled train scenes (default %(default)s)")
    p.add_argument("--num-val", type=int, default=500, help="labelled val scenes (default %(default)s)")
    p.add_argument("--num-val-single", type=int, default=300, help="one-object val scenes (default %(default)s)")
    p.add_argument("--workers", type=int, default=0, help="processes (default: one per CPU)")
    a = p.parse_args(argv)
    if a.size < 32 or min(a.num_train, a.num_val, a.num_val_single) < 1 or a.num_pretrain < 0:
        p.error("--size must be >= 32, --num-train/--num-val/--num-val-single >= 1, --num-pretrain >= 0")
    try:
        meta = write_objects_dataset(
            a.out_dir, a.assets, a.size, a.seed, a.num_pretrain, a.num_train, a.num_val, a.num_val_single, a.workers
        )
    except AssetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote the object scenes to {a.out_dir} in {meta['timings']['total_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
