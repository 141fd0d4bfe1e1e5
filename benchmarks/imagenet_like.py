"""ImageNet-like benchmark JPEGs made from scikit-image's bundled photos (no download).

ImageNet's training JPEGs are mostly about 500×375 (or 375×500, 500×333), quality ~90 with 4:2:0 chroma
subsampling; decoding them is a real part of a loader's cost, which small demo images hide. Each file
here is a random crop, maybe flipped, of one bundled colour
photo (mostly 4:3 landscape), rescaled so that its long side is 500 px and saved as such a JPEG.

  python benchmarks/imagenet_like.py OUT_DIR [--count 128]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
LONG_SIDE = 500
QUALITY = 90


def bundled_photos() -> list[np.ndarray]:
    """uint8[H,W,3] colour photos shipped inside scikit-image (and the left stereo motorcycle frame)."""
    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    photos.append(skimage.data.stereo_motorcycle()[0])
    return [p[..., :3] for p in photos]


def imagenet_like_image(photo: np.ndarray, rng: np.random.Generator, long_side: int = LONG_SIDE) -> Image.Image:
    """A random crop of ``photo`` (aspect 4:3, 3:2 or 3:4, 50–100% of the largest such box, maybe flipped),
    long side 500 px."""
    height, width = photo.shape[:2]
    aspect = float(rng.choice([4 / 3, 4 / 3, 4 / 3, 3 / 2, 3 / 4]))  # width / height, mostly landscape 4:3
    w_max = min(width, height * aspect)  # the largest box of that aspect inside the photo
    side = math.sqrt(rng.uniform(0.5, 1.0))
    w = max(1, round(w_max * side))
    h = max(1, min(height, round(w_max * side / aspect)))
    y = int(rng.integers(0, height - h + 1))
    x = int(rng.integers(0, width - w + 1))
    img = Image.fromarray(np.ascontiguousarray(photo[y : y + h, x : x + w]))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    s = long_side / max(w, h)
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)


def write_imagenet_like_jpegs(
    directory: str | Path, count: int = 128, seed: int = 0, long_side: int = LONG_SIDE
) -> list[Path]:
    """``count`` distinct JPEGs (q90, 4:2:0) under ``directory``; reuses the files if they are there.
    ``long_side`` > 500 makes the large images that reduced-scale decoding is for."""
    directory = Path(directory)
    paths = [directory / f"img_{i:04d}.jpg" for i in range(count)]
    if all(p.exists() for p in paths):
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    photos = bundled_photos()
    rng = np.random.default_rng(seed)
    for i, path in enumerate(paths):
        img = imagenet_like_image(photos[i % len(photos)], rng, long_side)
        img.save(path, format="JPEG", quality=QUALITY, subsampling=2)  # subsampling=2 is 4:2:0
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--count", type=int, default=128)
    a = p.parse_args()
    paths = write_imagenet_like_jpegs(a.out_dir, a.count)
    sizes = [Image.open(p).size for p in paths]
    print(f"{len(paths)} JPEGs in {a.out_dir}, e.g. {sizes[:4]}")


if __name__ == "__main__":
    main()
