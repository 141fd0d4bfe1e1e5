"""How much the fast loader changes the pictures: per-pixel differences against the previous pipeline on
the same seeds (the same crop boxes, flips and photometric parameters), in uint8 levels (0–255).

  python benchmarks/augment_diff.py [--images 48]   (or benchmarks/run.py --only augment_diff)

- geometry, ImageNet-size JPEGs (~500×375): torch's uint8 bicubic with antialiasing vs PIL's bicubic
  resize (the previous pipeline) on the full decode, for the two views and the raw view;
- geometry, large JPEGs (long side 1200): the same, plus decoding at 1/2–1/8 scale where every output
  still gets at least as many source pixels as it has (``Image.draft``);
- photometric: the batched ops of ``data.augment_on=device`` (float, run here on the CPU) vs PIL's ops
  (``augment_on=cpu``, the previous pipeline's), same parameters on the same crops;
- for scale: how far the augmentation itself moves the pixels (augmented vs un-augmented view), and
  the mean/std of all view pixels under each pipeline.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from imagenet_like import write_imagenet_like_jpegs
from PIL import Image

from r2o_pretrain.data.device_augment import augment_batch
from r2o_pretrain.data.folder import open_rgb
from r2o_pretrain.data.views import TwoViewTransform, _from_pil


def samples(files: list[str], transform: TwoViewTransform, seed: int = 0) -> list[dict]:
    out = []
    for i, f in enumerate(files):
        torch.manual_seed(seed * 100_003 + i)
        out.append(transform.load(f))
    return out


def stats(a: torch.Tensor, b: torch.Tensor) -> str:
    """mean / 99th percentile / max of |a - b| in levels."""
    d = (a.float() - b.float()).abs().flatten()
    q = torch.quantile(d[torch.randperm(len(d))[:1_000_000]], 0.99)  # quantile() takes at most 16M values
    return f"{d.mean():.2f} / {q:.1f} / {d.max():.0f}"


def pil_reference(
    path: str, boxes: torch.Tensor, view: int, raw: int, resample: int = Image.BICUBIC
) -> tuple[torch.Tensor, torch.Tensor]:
    """The previous pipeline's pictures of the same boxes: full decode, PIL bicubic resize of exactly the
    box (float coordinates), PIL flip; the raw view by PIL resize. → uint8[2,3,S,S], uint8[3,R,R]."""
    img = open_rgb(path)
    w, h = img.size
    views = []
    for y0, x0, y1, x1, flip in boxes.tolist():
        v = img.resize((view, view), resample, box=(x0 * w, y0 * h, x1 * w, y1 * h))
        views.append(_from_pil(v.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else v))
    return torch.stack(views), _from_pil(img.resize((raw, raw), resample))


def geometry_rows(files: list[str], label: str, view: int, raw: int) -> list[list[str]]:
    t = TwoViewTransform(view, raw, augment_on="device")
    new = samples(files, t)
    refs = [pil_reference(f, s["boxes"], view, raw) for f, s in zip(files, new)]
    drafted = 0
    for i, f in enumerate(files):
        torch.manual_seed(i)
        size = Image.open(f).size
        drafted += t.draft_size(t.draw_crops(*size), *size) is not None
    new_views, new_raw = torch.cat([s["views"] for s in new]), torch.stack([s["raw"] for s in new])
    old_views, old_raw = torch.cat([r[0] for r in refs]), torch.stack([r[1] for r in refs])
    bilinear = torch.cat([pil_reference(f, s["boxes"], view, raw, Image.BILINEAR)[0] for f, s in zip(files, new)])
    return [
        [
            f"geometry, {label}",
            "views: ours vs PIL on the full decode",
            stats(new_views, old_views),
            f"{drafted}/{len(files)} reduced-scale decodes",
        ],
        [f"geometry, {label}", "raw view: ours vs PIL on the full decode", stats(new_raw, old_raw), ""],
        [f"geometry, {label}", "for scale: PIL bilinear vs PIL bicubic views", stats(bilinear, old_views), ""],
    ]


def photometric_rows(files: list[str], view: int, raw: int) -> list[list[str]]:
    cpu = samples(files, TwoViewTransform(view, raw, augment_on="cpu"), seed=1)
    dev = samples(files, TwoViewTransform(view, raw, augment_on="device"), seed=1)
    plain = torch.cat([s["views"] for s in dev]).float() / 255
    params = torch.cat([s["photometric"] for s in dev])
    on_device = (augment_batch(plain, params) * 255).round()
    pil = torch.cat([s["views"] for s in cpu]).float()
    moved = (pil - plain * 255).abs().mean()
    return [
        ["photometric", "device ops (float) vs PIL ops, same params", stats(on_device, pil), ""],
        ["photometric, for scale", "augmented vs un-augmented view (PIL)", f"{moved:.1f} (mean)", ""],
        [
            "all view pixels, mean / std",
            "PIL ops vs device ops",
            f"{pil.mean():.1f} / {pil.std():.1f} vs {on_device.mean():.1f} / {on_device.std():.1f}",
            "",
        ],
    ]


def run(images: int = 48, view: int = 224, raw: int = 224) -> list[list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        typical = [str(p) for p in write_imagenet_like_jpegs(Path(tmp) / "typical", images)]
        large = [str(p) for p in write_imagenet_like_jpegs(Path(tmp) / "large", images // 2, seed=1, long_side=1200)]
        rows = geometry_rows(typical, "~500x375 JPEGs", view, raw)
        rows += geometry_rows(large, "1200px JPEGs", view, raw)
        rows += photometric_rows(typical, view, raw)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=48)
    a = p.parse_args()
    from common import table

    print(table(run(a.images), ["comparison (same seeds)", "what", "|diff| mean / p99 / max (levels)", "note"]))


if __name__ == "__main__":
    main()
