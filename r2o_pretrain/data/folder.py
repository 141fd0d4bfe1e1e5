"""Listing image files and opening them robustly.

Accepted inputs: a folder searched recursively (ImageNet's ``train/<class>/`` layout and flat folders
alike) or a text file with one image path per line (relative paths are relative to the file).
Files that are not images by extension are skipped and counted at listing time; files that fail to
decode (corrupt, truncated, unsupported) are skipped at load time with a warning naming the file.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif")

# A truncated file is an error, not half an image.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# What PIL raises for a file it cannot decode: OSError (unidentified, truncated), ValueError and SyntaxError
# (broken chunks, e.g. "broken PNG file"), and the decompression-bomb pair (the warning is raised as an error).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning, Image.DecompressionBombError)


class DatasetError(RuntimeError):
    """The dataset cannot be used at all (missing, empty); the message says what to do."""


class BadImageError(RuntimeError):
    """One file cannot be used as an image; the message names it."""


@dataclass
class FileListing:
    files: list[str]
    skipped_non_images: list[str] = field(default_factory=list)


def list_images(root: str | os.PathLike) -> FileListing:
    """All image files under a folder (recursive, sorted) or listed in a text file."""
    root = Path(os.path.expanduser(str(root)))
    if not str(root) or not root.exists():
        raise DatasetError(
            f"dataset path '{root}' does not exist. Set data.root to an image folder or a text file "
            "of image paths, or run with data.demo=true to train on the bundled demo scenes."
        )
    files: list[str] = []
    skipped: list[str] = []
    if root.is_file():
        base = root.parent
        for n, line in enumerate(root.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            p = Path(line)
            p = p if p.is_absolute() else base / p
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(str(p))
            else:
                skipped.append(f"{root}:{n}: {p}")
    else:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = os.path.join(dirpath, name)
                (files if name.lower().endswith(IMAGE_EXTENSIONS) else skipped).append(path)
    if not files:
        raise DatasetError(
            f"no images found in '{root}' (looked for {', '.join(IMAGE_EXTENSIONS)}"
            f"{'; ' + str(len(skipped)) + ' other files skipped' if skipped else ''}). "
            "Point data.root at a folder of images or a text file of image paths."
        )
    if skipped:
        logger.warning("%d non-image files skipped under %s (first: %s)", len(skipped), root, skipped[0])
    return FileListing(files=files, skipped_non_images=skipped)


HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I", "F")  # PIL modes of 16-bit, 32-bit and float images


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode → 8-bit RGB. 16-bit and float images are rescaled, not clipped."""
    if img.mode in HIGH_BIT_MODES:
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def open_rgb(
    path: str, min_size: int = 1, draft: Callable[[tuple[int, int]], tuple[int, int] | None] | None = None
) -> Image.Image:
    """Decode ``path`` fully into an RGB image, or raise BadImageError naming the file and the reason.

    ``draft(size)``, given the stored (width, height), may return the smallest (width, height) the caller
    needs: a JPEG is then decoded at 1/2, 1/4 or 1/8 scale where that still covers it (PIL's
    ``Image.draft``, a scaled IDCT: less work than decoding everything and resizing). ``min_size``
    applies to the stored size.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                stored = img.size
                request = draft(stored) if draft is not None else None
                if request is not None and img.format == "JPEG":
                    img.draft(None, request)
                img.load()
                rgb = _to_rgb(img)
    except DECODE_ERRORS as exc:
        raise BadImageError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    if min(stored) < min_size:
        raise BadImageError(f"{path}: image is {stored[0]}x{stored[1]}, smaller than data.min_image_size={min_size}")
    return rgb
