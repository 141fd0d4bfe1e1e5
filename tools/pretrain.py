#!/usr/bin/env python
"""R2O pretraining.

With no arguments: writes the bundled demo scenes to data/demo (if missing) and pretrains a ResNet-18
on them (configs/pretrain/demo.yaml, a few minutes on 2 CPU cores), writing into runs/demo/:
checkpoints/last.pth, export/backbone_torchvision.pth, tensorboard/, metrics.jsonl, regions.png.

Examples:
  python tools/pretrain.py
  python tools/pretrain.py --config configs/pretrain/r2o_r50_imagenet_300ep.yaml data.root=/data/imagenet/train
  python tools/pretrain.py train.epochs=2 model.method=detcon --output-dir runs/detcon
  python tools/pretrain.py --resume auto               # continue the run in --output-dir (without it, a run
                                                       # there that did not finish is refused, not replaced)
  python tools/pretrain.py --config configs/pretrain/r2o_r50_imagenet_300ep.yaml data.root=/data/imagenet/train \
      eval.every_epochs=5 eval.images=CUB_200_2011/images eval.masks=segmentations   # online evaluation
  python tools/pretrain.py --config configs/pretrain/r2o_r50_imagenet_300ep.yaml --dry-run \
      --world-size 128 data.num_examples=1281167      # the per-epoch plan (K, steps, lr, tau), no training
  torchrun --nproc-per-node 8 tools/pretrain.py --config ...   # DDP; multi-node with torchrun's flags

Exit codes: 0 done (and a torchrun worker stopped by a preemption signal), 2 unusable settings, data or
checkpoint, 3 the loss or the weights became NaN/inf, 75 stopped by a preemption signal (train.preempt_signals) after
writing its checkpoint: continue with --resume auto (docs/pretraining.md, "Preemption").
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from r2o_pretrain.build import dry_run_plan
from r2o_pretrain.config import ConfigError, describe_keys, load_config
from r2o_pretrain.data.folder import BadImageError, DatasetError
from r2o_pretrain.engine.checkpoint import CheckpointError
from r2o_pretrain.engine.trainer import NonFiniteLossError, NonFiniteWeightsError, train
from r2o_pretrain.eval.online import check_eval_data, describe_cost

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_CONFIG = ROOT / "configs" / "pretrain" / "demo.yaml"


def settings_listing() -> str:
    """describe_keys with demo.yaml's values; the built-in defaults alone if demo.yaml cannot be read (the
    run itself reports that file's problem)."""
    try:
        return describe_keys(DEFAULT_CONFIG)
    except ConfigError:
        return describe_keys()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/pretrain.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Settings (section.key = built-in default, then what {DEFAULT_CONFIG.name}, the default --config, sets "
        "instead), any of which can be given as key=value:\n" + settings_listing(),
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML file of settings (default: %(default)s)")
    parser.add_argument("--output-dir", help="where checkpoints, logs and exports go (= train.output_dir)")
    parser.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="continue a run: 'auto' takes OUTPUT_DIR/checkpoints/last.pth if it exists",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the per-epoch plan (K, steps, lr and tau at each epoch's first step) and totals; no training",
    )
    parser.add_argument(
        "--world-size",
        type=int,
        default=int(os.environ.get("WORLD_SIZE", "1")),
        help="processes to plan for with --dry-run (default: this launch's, %(default)s)",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.epochs=10 model.depth=50")
    return parser.parse_intermixed_args(argv)  # key=value on both sides of an option


def eval_cost_line(cfg, num_examples: int) -> str:
    """--dry-run: what the online evaluation (eval.*) will cost; its folders are listed if they exist."""
    try:
        data = check_eval_data(cfg)
    except ConfigError as exc:
        return describe_cost(cfg, num_examples, None) + f"\nwarning: training would stop at start-up: {exc}"
    return describe_cost(cfg, num_examples, data)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"train.output_dir={args.output_dir}")
    try:
        cfg = load_config(args.config, overrides)
        if args.dry_run:
            if args.world_size < 1:
                raise ConfigError(f"--world-size must be >= 1, got {args.world_size}")
            plan = dry_run_plan(cfg, args.world_size)
            print(plan.table())
            print(eval_cost_line(cfg, plan.num_examples))
            return 0
        result = train(cfg, args.resume)
    except (
        ConfigError,
        DatasetError,
        CheckpointError,
        BadImageError,
        NonFiniteLossError,
        NonFiniteWeightsError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, (NonFiniteLossError, NonFiniteWeightsError)) else 2
    if not result.is_main:  # torchrun: rank 0 reports for the run
        return 0
    print(f"checkpoint: {result.checkpoint}")
    if result.export:
        print(f"exported backbone (torchvision format): {result.export}")
    if result.regions_png:
        print(f"region picture: {result.regions_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
