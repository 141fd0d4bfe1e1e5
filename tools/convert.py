#!/usr/bin/env python
"""Convert an R2O / torchvision ResNet checkpoint for torchvision, detectron2 or mmsegmentation.

The input format is detected from the file's contents and printed: this project's pretraining
checkpoints (online or target encoder), its torchvision exports, the official R2O checkpoints,
plain torchvision state dicts, {"state_dict": ...} wrappers and detectron2 .pkl backbones of
torchvision layout (e.g. the model zoo's torchvision-converted R-50.pkl, for a supervised baseline);
ResNet-18/34/50/101/152. Caffe2-named MSRA .pkl files are refused (another network: BN folded,
stride in the 1x1, BGR input). Files are read as weights only: a pickle that would run code is
refused, naming the file and what it needs. Nothing is written unless every backbone tensor is
present with the right shape.

Examples:
  python tools/convert.py runs/demo/checkpoints/last.pth r18_d2.pkl --to d2
  python tools/convert.py r2o_official_300ep.pth r50_mmseg.pth --to mmseg
  python tools/convert.py last.pth target_r50.pth --to torchvision --encoder target
  python tools/convert.py R-50.pkl r50_supervised_mmseg.pth --to mmseg   # detectron2 torchvision-layout .pkl

A torchvision output holds the backbone without the classifier: load it with
  torchvision.models.resnet50().load_state_dict(torch.load(PATH, weights_only=True), strict=False)
(it then reports missing exactly fc.weight and fc.bias, the classifier; convert prints this call with the
file's depth and path).

Exit codes: 0 written; 2 refused (unreadable, incomplete or unsafe input, bad arguments); 1 other failure.
"""

from __future__ import annotations

import argparse
import sys

from r2o_pretrain.weights import ConversionError, read_resnet_weights, torchvision_loading, write_weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/convert.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="checkpoint to read")
    parser.add_argument("output", help="file to write (never the input)")
    parser.add_argument("--to", required=True, choices=["torchvision", "d2", "mmseg"], help="output format")
    parser.add_argument(
        "--encoder",
        default="online",
        choices=["online", "target"],
        help="which encoder of a pretraining checkpoint (default: %(default)s)",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow inputs that need full unpickling (can run code: trusted files only)",
    )
    args = parser.parse_args(argv)
    try:
        weights = read_resnet_weights(args.input, args.encoder, args.allow_pickle)
        print(f"input: {args.input}: {weights.source_format}, ResNet-{weights.depth}, {len(weights.state)} tensors")
        for note in weights.notes:
            print(f"  note: {note}")
        out = write_weights(weights, args.output, args.to)
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({args.to})")
    if args.to == "torchvision":
        print(f"  {torchvision_loading(out, weights.state)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
