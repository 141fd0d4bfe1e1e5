#!/usr/bin/env python
"""Fine-tune an R2O backbone with detectron2: the R2O/DetCon COCO protocol (Mask R-CNN R50-FPN) and MoCo's
R50-C4 protocols (Faster R-CNN on VOC07+12, Mask R-CNN on COCO 2x).

detectron2's own conventions: --config-file, --num-gpus, --num-machines, --machine-rank, --dist-url,
--resume, --eval-only and trailing KEY VALUE overrides. MODEL.WEIGHTS takes an R2O pretraining
checkpoint, a torchvision export, an official R2O checkpoint or a converted .pkl; a load report says
how many backbone tensors were loaded.

Examples:
  python tools/train_net.py --config-file r2o_d2/configs/mask_rcnn_R50_FPN.yaml --num-gpus 8 \\
      MODEL.WEIGHTS runs/r2o_r50/checkpoints/last.pth
  python tools/train_net.py --config-file r2o_d2/configs/mask_rcnn_R18_FPN_demo.yaml \\
      MODEL.WEIGHTS runs/demo/checkpoints/last.pth               # CPU, demo scenes
  python tools/train_net.py --config-file ... --coco-dataset mine_train ann.json images/ \\
      --coco-dataset mine_val val.json val_images/ DATASETS.TRAIN '("mine_train",)' DATASETS.TEST '("mine_val",)'
  python tools/train_net.py --config-file r2o_d2/configs/faster_rcnn_R50_C4_voc0712_24k.yaml --num-gpus 8 \\
      MODEL.WEIGHTS r50.pth          # VOC2007/VOC2012 under $DETECTRON2_DATASETS (detectron2's builtin names)
  python tools/train_net.py --config-file r2o_d2/configs/faster_rcnn_R50_C4_voc0712_24k.yaml \\
      --voc-dataset mine_trainval VOCdevkit/VOC2007 trainval 2007 --voc-dataset mine_test VOCdevkit/VOC2007 test 2007 \\
      DATASETS.TRAIN '("mine_trainval",)' DATASETS.TEST '("mine_test",)' MODEL.WEIGHTS r50.pth
  python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth

MODEL.ROI_HEADS.NUM_CLASSES follows the datasets' categories unless given on the command line (then it
must agree with them); training and test sets must share their categories. With fewer GPUs than
SOLVER.REFERENCE_WORLD_SIZE, detectron2 scales batch, lr and schedule (SOLVER.REFERENCE_WORLD_SIZE 0: as given).
Checks that need no GPU run before any process starts; a failed one exits with status 2 and a message.
"""

from __future__ import annotations

import argparse
import logging
import sys

import detectron2.utils.comm as comm
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils.logger import setup_logger

from r2o_d2 import (
    R2OConfigError,
    R2OTrainer,
    adapt_norm_to_world_size,
    add_r2o_config,
    agreed_classes,
    check_batch_fits_reference_world_size,
    check_mask_format,
    register_coco_dataset,
    register_demo_datasets,
    register_voc_dataset,
)
from r2o_d2.trainer import EvalCheckpointer
from r2o_pretrain.weights import ConversionError

logger = logging.getLogger("r2o_d2")

NUM_CLASSES = "MODEL.ROI_HEADS.NUM_CLASSES"


def merged_cfg(args):
    cfg = get_cfg()
    add_r2o_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    return cfg


def command_line_value(opts: list[str], key: str) -> str | None:
    """The last value given for ``key`` among the trailing KEY VALUE overrides, or None."""
    values = [v for k, v in zip(opts[0::2], opts[1::2]) if k == key]
    return values[-1] if values else None


def dataset_names(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def preflight(args) -> list[str]:
    """What can be checked before any process starts: the batch against the world size and the classes of
    the datasets. Sets NUM_CLASSES from the data unless it was given; returns lines for the log."""
    register_datasets(args)
    cfg = merged_cfg(args)
    if not args.eval_only:
        check_batch_fits_reference_world_size(cfg, args.num_gpus * args.num_machines)
    names = dataset_names(cfg.DATASETS.TEST)
    if not args.eval_only:
        names = dataset_names(cfg.DATASETS.TRAIN) + names
    own_voc = {name for name, *_ in args.voc_dataset or []}
    for name in dict.fromkeys(names):
        if name in own_voc:
            DatasetCatalog.get(name)  # reads every XML once: a broken folder is named before any process starts
    classes = agreed_classes(names)
    if not args.eval_only and cfg.MODEL.MASK_ON:
        check_mask_format(dataset_names(cfg.DATASETS.TRAIN), cfg.INPUT.MASK_FORMAT)
    given = command_line_value(args.opts, NUM_CLASSES)
    if given is not None:
        if int(given) != len(classes):
            raise R2OConfigError(
                f"{NUM_CLASSES} {given} was given on the command line, but dataset '{names[0]}' has "
                f"{len(classes)} classes ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}). "
                f"Leave {NUM_CLASSES} out (it follows the data) or fix the json's categories."
            )
        return []
    args.opts = [*args.opts, NUM_CLASSES, str(len(classes))]
    return [
        f"{NUM_CLASSES} {len(classes)}: the classes of dataset '{names[0]}' "
        f"(config file: {cfg.MODEL.ROI_HEADS.NUM_CLASSES}; set it on the command line to pin it)"
    ]


def setup(args):
    cfg = merged_cfg(args)
    changed = adapt_norm_to_world_size(cfg, comm.get_world_size())
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="r2o_d2")
    if changed:
        logger.info("world size 1: SyncBN → BN for %s", ", ".join(changed))
    for line in getattr(args, "preflight_notes", []):
        logger.info("%s", line)
    return cfg


def register_datasets(args) -> None:
    register_demo_datasets()
    for name, json_file, image_root in args.coco_dataset or []:
        register_coco_dataset(name, json_file, image_root)
    for name, dirname, split, year in args.voc_dataset or []:
        register_voc_dataset(name, dirname, split, year)


def main(args):
    register_datasets(args)
    cfg = setup(args)
    if args.eval_only:
        model = R2OTrainer.build_model(cfg)
        EvalCheckpointer(
            model,
            save_dir=cfg.OUTPUT_DIR,
            encoder=cfg.MODEL.R2O.ENCODER,
            allow_pickle=cfg.MODEL.R2O.ALLOW_PICKLE,
            test_sets=dataset_names(cfg.DATASETS.TEST),
        ).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return R2OTrainer.test(cfg, model)
    trainer = R2OTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def parser():
    p = default_argument_parser(epilog=__doc__)
    p.add_argument(
        "--coco-dataset",
        nargs=3,
        action="append",
        metavar=("NAME", "JSON", "IMAGE_DIR"),
        help="register a COCO-format dataset under NAME (repeatable); then use it in DATASETS.TRAIN/TEST",
    )
    p.add_argument(
        "--voc-dataset",
        nargs=4,
        action="append",
        metavar=("NAME", "DIR", "SPLIT", "YEAR"),
        help="register a PASCAL VOC-layout folder (DIR/JPEGImages, DIR/Annotations/*.xml, "
        "DIR/ImageSets/Main/SPLIT.txt; VOC's 20 classes) under NAME (repeatable), evaluated with detectron2's "
        "PascalVOCDetectionEvaluator; YEAR 2007 = VOC07 11-point AP, 2012 = area AP",
    )
    return p


def split_trailing_options(p: argparse.ArgumentParser, opts: list[str]) -> tuple[list[str], list[str]]:
    """Split detectron2's trailing overrides into this tool's own options given among them and the KEY VALUE pairs.

    detectron2's parser reads everything after the first override as overrides, so ``MODEL.WEIGHTS w --resume``
    would hand ``--resume`` to yacs ("Override list has odd length"). Config keys never start with ``--``.
    """
    actions = {s: a for a in p._actions for s in a.option_strings}  # argparse has no public lookup
    moved: list[str] = []
    overrides: list[str] = []
    i = 0
    while i < len(opts):
        name = opts[i].split("=", 1)[0]
        action = actions.get(name)
        if action is None:
            overrides.append(opts[i])
            i += 1
            continue
        count = 0 if "=" in opts[i] else {None: 1}.get(action.nargs, action.nargs)
        if not isinstance(count, int):
            raise R2OConfigError(f"give {name} before the KEY VALUE overrides")
        moved += opts[i : i + 1 + count]
        i += 1 + count
    if len(overrides) % 2:
        pairs = " ".join(overrides)
        raise R2OConfigError(
            f"the overrides must be KEY VALUE pairs, got an odd number of words: {pairs}. "
            "An option of this tool or a value may be missing or misspelt (see --help)."
        )
    return moved, overrides


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """detectron2's arguments; this tool's options may also come after the overrides."""
    p = parser()
    args = p.parse_args(argv)
    moved, overrides = split_trailing_options(p, args.opts)
    if moved:
        args = p.parse_args(moved, namespace=args)
    args.opts = overrides
    return args


def cli(argv=None) -> int:
    try:
        args = parse_args(argv)
    except R2OConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        args.preflight_notes = preflight(args)
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except (ConversionError, FileNotFoundError, R2OConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
