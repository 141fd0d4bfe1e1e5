#!/usr/bin/env python
r"""R2O pretraining.

With no arguments: writes the bundled demo scenes to data/demo (if missing) and pretrains a ResNet-18
on them (configs/pretrain/demo.yaml, a few minutes on 2 CPU cores), writing into runs/demo/:
checkpoints/last.pth, export/backbone_torchvision.pth, tensorboard/, metrics.jsonl, regions.png.

Examples:
  python tools/pretrain.py
  python tools/pretrain.py --config configs/pretrain/r2o_r50_imagenet_300ep.yaml data.root=/data/imagenet/train
  python tools/pretrain.py train.epochs=2 model.method=detcon --output-dir runs/detcon
  python tools/pretrain.py --output-dir runs/p --resume auto   # continue the run in runs/p with its own settings
                                            # (without --resume, a run there that did not finish is refused)
  python tools/pretrain.py --output-dir runs/p --resume auto train.epochs=40 --resume-with-changes
                                            # continue it with a setting that changes the run, on purpose
  python tools/pretrain.py --config configs/pretrain/r2o_r50_imagenet_300ep.yaml data.root=/data/imagenet/train \
      eval.every_epochs=5 eval.images=CUB_200_2011/images eval.masks=segmentations   # online evaluation
  python tools/pretrain.py --config configs/pretrain/r2o_r50_imagenet_300ep.yaml --dry-run \
      --world-size 128 data.num_examples=1281167      # the per-epoch plan (K, steps, lr, tau), no training
  torchrun --nproc-per-node 8 tools/pretrain.py --config ...   # DDP; multi-node with torchrun's flags

Resuming (docs/pretraining.md, "Resume"): --resume auto continues the run in --output-dir with the settings
saved in its checkpoint; key=value overrides of how it is logged, checkpointed, loaded or evaluated apply with
a note; those that change the run (data, batch size, epochs, max_steps, method, model, curriculum, optimiser...)
and a --config file that differs from the run's are refused (exit 2) unless --resume-with-changes is given.

Exit codes: 0 done (and a torchrun worker stopped by a preemption signal or Ctrl-C), 2 unusable settings, data
or checkpoint, 3 the loss or the weights became NaN/inf, 75 stopped by a preemption signal
(train.preempt_signals) after writing its checkpoint, 130 stopped by Ctrl-C after writing its checkpoint (a
second Ctrl-C exits at once, without one): continue with --resume auto (docs/pretraining.md, "Preemption").
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path


def _interrupted_while_starting(signum, frame) -> None:
    """Ctrl-C during the imports below (torch's takes seconds): a line and exit 130, not a traceback."""
    print("\ninterrupted (Ctrl-C) while starting: nothing to save", file=sys.stderr)
    os._exit(130)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _interrupted_while_starting)

from r2o_pretrain.build import dry_run_plan  # noqa: E402
from r2o_pretrain.config import Config, ConfigError, describe_keys, load_config  # noqa: E402
from r2o_pretrain.data.folder import BadImageError, DatasetError  # noqa: E402
from r2o_pretrain.engine.checkpoint import CheckpointError  # noqa: E402
from r2o_pretrain.engine.preemption import EXIT_INTERRUPTED  # noqa: E402
from r2o_pretrain.engine.resume import ALLOW_FLAG, resume_checkpoint, resumed_config, saved_settings  # noqa: E402
from r2o_pretrain.engine.trainer import NonFiniteLossError, NonFiniteWeightsError, train  # noqa: E402
from r2o_pretrain.eval.online import check_eval_data, describe_cost  # noqa: E402

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
    parser.add_argument(
        "--config",
        help=f"YAML file of settings (default: {DEFAULT_CONFIG.relative_to(ROOT)}; with --resume: the run's own, "
        "saved in its checkpoint)",
    )
    parser.add_argument("--output-dir", help="where checkpoints, logs and exports go (= train.output_dir)")
    parser.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="continue a run with its saved settings: 'auto' takes OUTPUT_DIR/checkpoints/last.pth if it exists "
        "(else starts from scratch, with OUTPUT_DIR/config.yaml's settings if there is one)",
    )
    parser.add_argument(
        ALLOW_FLAG,
        action="store_true",
        help="with --resume: accept settings that change the run (batch size, data, epochs, lr, ...); the epoch "
        'bookkeeping is kept (docs/pretraining.md, "Resume")',
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


def run_config(args: argparse.Namespace) -> Config:
    """The settings of this command line. From scratch: --config (default demo.yaml), then the overrides.
    With --resume and no --config: the resumed run's own saved settings, then the overrides, in the output
    folder the command line names (r2o_pretrain/engine/resume.py)."""
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"train.output_dir={args.output_dir}")
    cfg = load_config(args.config or DEFAULT_CONFIG, overrides)
    if not args.resume or args.config:
        return cfg
    out = cfg.train.output_dir
    saved = saved_settings(resume_checkpoint(out, args.resume), out)
    if saved is None:
        return cfg
    return resumed_config(*saved, overrides + [f"train.output_dir={out}"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.resume_with_changes and not args.resume:
            raise ConfigError(f"{ALLOW_FLAG} goes with --resume auto|PATH")
        cfg = run_config(args)
        if args.dry_run:
            if args.world_size < 1:
                raise ConfigError(f"--world-size must be >= 1, got {args.world_size}")
            plan = dry_run_plan(cfg, args.world_size)
            print(plan.table())
            warmup = plan.warmup_warning(cfg.train.max_steps if cfg.train.max_steps >= 0 else None)
            if warmup:
                print(f"warning: {warmup}")
            print(eval_cost_line(cfg, plan.num_examples))
            return 0
        result = train(cfg, args.resume, args.resume_with_changes)
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
    except KeyboardInterrupt:  # Ctrl-C before the training loop started (it checkpoints and exits 130 itself)
        print("\ninterrupted (Ctrl-C) before training started: nothing to save", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not result.is_main:  # torchrun: rank 0 reports for the run
        return 0
    print(f"checkpoint: {result.checkpoint}")
    if result.export:
        print(f"exported backbone (torchvision format): {result.export}")
    if result.regions_png:
        print(f"region picture: {result.regions_png}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on, main() and the trainer handle it
    sys.exit(main())
