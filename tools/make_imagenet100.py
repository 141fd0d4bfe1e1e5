#!/usr/bin/env python
"""Build the ImageNet-100 folder (CMC's and solo-learn's 100 classes) from an ImageNet tree, with links.

  python tools/make_imagenet100.py /data/imagenet data/imagenet100
  python tools/make_imagenet100.py /data/imagenet data/imagenet100 --splits train   # no val/ by class

IMAGENET_ROOT must hold train/<wnid>/ (and val/<wnid>/: the 50,000 validation images sorted into class
folders, as torchvision's ImageFolder reads them). OUT_DIR/<split>/<wnid> becomes a symbolic link to
IMAGENET_ROOT/<split>/<wnid> (absolute), so nothing is copied and the images keep their modification times
(the region cache's key). Everything is checked before the first link is made: a missing or empty class
folder, a flat val/ and an OUT_DIR entry that is not our link stop it (exit 2) with the paths. Running it
again over a finished folder changes nothing. Then:

  python tools/pretrain.py --config configs/pretrain/r2o_r50_imagenet100_200ep.yaml data.root=OUT_DIR/train
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLASSES = ROOT / "configs" / "pretrain" / "imagenet100_classes.txt"
WNID = re.compile(r"^n\d{8}$")
EXPECTED_TRAIN_IMAGES = 126_689  # ImageNet-100 train with CMC's list (1,300 per class but for a few)


class SubsetError(ValueError):
    """The class list or the ImageNet tree cannot give the subset; the message names the paths."""


class Link(NamedTuple):  # a NamedTuple: the tests load this file without registering it as a module
    path: Path  # OUT_DIR/<split>/<wnid>
    target: Path  # IMAGENET_ROOT/<split>/<wnid>, absolute
    images: int  # files in the target folder


def read_class_list(path: Path) -> list[str]:
    """WordNet ids, one a line, in file order ('#' comments and blank lines skipped); SubsetError for a
    line that is not an id (n + 8 digits) or a repeated id."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SubsetError(f"class list {path}: cannot be read ({exc})") from exc
    ids: list[str] = []
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not WNID.match(line):
            raise SubsetError(f"class list {path}, line {number}: {line!r} is not a WordNet id (n + 8 digits)")
        if line in ids:
            raise SubsetError(f"class list {path}, line {number}: {line} is listed twice")
        ids.append(line)
    if not ids:
        raise SubsetError(f"class list {path}: no class ids")
    return ids


def plan_links(imagenet: Path, out: Path, classes: list[str], splits: list[str]) -> list[Link]:
    """Every link to make (or already made), after checking the whole tree; SubsetError listing every
    problem otherwise."""
    problems: list[str] = []
    links: list[Link] = []
    for split in splits:
        src = imagenet / split
        if not src.is_dir():
            problems.append(f"{src}: no such folder (IMAGENET_ROOT must hold {split}/<wnid>/)")
            continue
        if not any(d.is_dir() and WNID.match(d.name) for d in src.iterdir()):
            hint = (
                " (sort the validation images into val/<wnid>/ first, or use --splits train)" if split == "val" else ""
            )
            problems.append(f"{src}: no class folders (<wnid>/){hint}")
            continue
        missing = [c for c in classes if not (src / c).is_dir()]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            problems.append(f"{src}: {len(missing)} of the {len(classes)} class folders are missing: {shown}")
        for c in classes:
            folder = src / c
            if c in missing:
                continue
            n = sum(1 for e in os.scandir(folder) if e.is_file())
            if n == 0:
                problems.append(f"{folder}: no images")
            link = Link(out / split / c, folder.resolve(), n)
            if link.path.is_symlink() or link.path.exists():
                if not (link.path.is_symlink() and Path(os.readlink(link.path)) == link.target):
                    problems.append(
                        f"{link.path}: exists and is not a link to {link.target}: remove it or choose another OUT_DIR"
                    )
            links.append(link)
    if problems:
        raise SubsetError(f"{len(problems)} problem(s), nothing was linked:\n  " + "\n  ".join(problems))
    return links


def make_links(links: list[Link]) -> int:
    """Create the links that are not there yet; returns how many were made."""
    made = 0
    for link in links:
        if link.path.is_symlink():
            continue
        link.path.parent.mkdir(parents=True, exist_ok=True)
        link.path.symlink_to(link.target, target_is_directory=True)
        made += 1
    return made


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="tools/make_imagenet100.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("imagenet_root", type=Path, help="the ImageNet folder holding train/ and val/")
    p.add_argument("out_dir", type=Path, help="where <split>/<wnid> links are made")
    p.add_argument(
        "--classes", type=Path, default=DEFAULT_CLASSES, help="class list, one WordNet id a line (default: %(default)s)"
    )
    p.add_argument("--splits", nargs="+", default=["train", "val"], help="splits to link (default: train val)")
    a = p.parse_args(argv)
    try:
        classes = read_class_list(a.classes)
        links = plan_links(a.imagenet_root, a.out_dir, classes, a.splits)
    except SubsetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    made = make_links(links)
    for split in a.splits:
        images = sum(link.images for link in links if link.path.parent.name == split)
        print(f"{a.out_dir / split}: {len(classes)} classes, {images:,} images")
    print(f"{made} link(s) made, {len(links) - made} already there")
    train = sum(link.images for link in links if link.path.parent.name == "train")
    if "train" in a.splits and a.classes == DEFAULT_CLASSES and train != EXPECTED_TRAIN_IMAGES:
        print(f"warning: {train:,} train images, ImageNet-100 has {EXPECTED_TRAIN_IMAGES:,}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
