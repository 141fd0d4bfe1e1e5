"""The two augmented views, their crop boxes and flips, and the un-augmented raw view.

BYOL's augmentation (docs/method.md, step 1). Randomness comes from torch's global generator; the
dataset seeds it per sample (see ``dataset.py``), so a sample is a pure function of (seed, epoch,
index) — which is what makes resumed runs exact.

The pictures stay uint8 from the decoder to the device (``device_augment.batch_on_device`` normalises
them in the step). One decode serves the three outputs; the crop boxes are drawn from the stored image
size before decoding, so that a large JPEG can be decoded at a reduced scale when every output still
gets at least as many source pixels as it has (``Image.draft``). Resizing is torch's uint8 bicubic
with antialiasing (PIL's filter, several times faster than PIL's own resize here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from .folder import open_rgb
from .photometric import BLURS, BYOL, PhotometricSpec, apply_photometric_pil, blur_pil_image, sample_two_views

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PILGaussianBlur(torch.nn.Module):
    """Gaussian blur with sigma ~ U(lo, hi) on a PIL image: ``blur="opencv"`` is the authors'
    ``cv2.GaussianBlur`` with a 23×23 kernel; ``"pil"`` is PIL's ImageFilter, a box-blur approximation
    of the Gaussian that differs from it by up to 7 grey levels (benchmarks/departures.py)."""

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0), blur: str = "opencv") -> None:
        super().__init__()
        self.sigma, self.blur = sigma, blur

    def forward(self, img: Image.Image) -> Image.Image:
        sigma = float(torch.empty(1).uniform_(*self.sigma))
        return blur_pil_image(img, sigma, self.blur)


def photometric_augmentation(blur_p: float, solarize_p: float, blur: str = "opencv") -> T.Compose:
    """BYOL's colour pipeline for one view as torchvision transforms (PIL image → normalised tensor), as
    the authors run it; the benchmarks' baseline. ``blur``: ``"opencv"`` (the authors': cv2.GaussianBlur,
    23 taps) or ``"pil"`` (PIL's box-blur approximation)."""
    return T.Compose(
        [
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([PILGaussianBlur((0.1, 2.0), blur)], p=blur_p),
            T.RandomSolarize(threshold=128, p=solarize_p),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


@dataclass(frozen=True)
class Crop:
    """One view's RandomResizedCrop box in pixels of the stored image, and its flip flag."""

    top: int
    left: int
    height: int
    width: int
    flip: bool


def _to_pil(pixels: torch.Tensor) -> Image.Image:
    """uint8[3,H,W] → RGB PIL image."""
    return Image.fromarray(np.ascontiguousarray(pixels.permute(1, 2, 0).numpy()))


def _from_pil(img: Image.Image) -> torch.Tensor:
    """RGB PIL image → uint8[3,H,W] (channels-last strides)."""
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)


def resize_bicubic(pixels: torch.Tensor, size: int, resampler: str = "torch") -> torch.Tensor:
    """uint8[3,h,w] → uint8[3,size,size], bicubic with antialiasing (``"torch"``) or PIL's resize (``"pil"``)."""
    if resampler == "pil":
        return _from_pil(_to_pil(pixels).resize((size, size), Image.BICUBIC))
    x = pixels.unsqueeze(0).contiguous(memory_format=torch.channels_last)  # the fast layout of the uint8 kernel
    return F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)[0]


@dataclass
class TwoViewTransform:
    """An image → dict(views uint8[2,3,S,S], boxes float[2,5], raw uint8[3,R,R], raw_rgb uint8[R,R,3]
    [, photometric float[2,P]]).

    ``boxes[v] = (y0, x0, y1, x1, flipped)``: the crop of view v, normalised to [0, 1] of the full image,
    exactly the pixels that were resized (the region masks are cut from the raw view with these boxes).
    ``augment_on="cpu"`` applies the photometric augmentation here with PIL; ``"device"`` leaves the views
    un-augmented and returns its parameters as ``photometric`` for ``device_augment.batch_on_device``.
    ``photometric`` sets the augmentation's distributions (BYOL's by default); ``blur`` the CPU path's blur
    (``opencv``, the authors', or ``pil``; the device path always runs the 23-tap Gaussian in float). ``resampler="pil"`` and
    ``draft=False`` give the previous pipeline's geometry (comparisons).
    """

    view_size: int = 224
    raw_size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    augment_on: str = "cpu"  # cpu | device
    draft: bool = True
    resampler: str = "torch"  # torch | pil
    photometric: PhotometricSpec = BYOL  # the colour/blur/solarize distributions (data.color_jitter, ...)
    blur: str = "opencv"  # opencv | pil: the CPU path's blur (data.blur)

    def __post_init__(self) -> None:
        if self.blur not in BLURS:
            raise ValueError(f"data.blur must be one of {BLURS}, got {self.blur!r}")
        if self.augment_on not in ("cpu", "device"):
            raise ValueError(f"data.augment_on must be 'cpu' or 'device', got {self.augment_on!r}")
        if self.resampler not in ("torch", "pil"):
            raise ValueError(f"resampler must be 'torch' or 'pil', got {self.resampler!r}")
        self.normalize = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def draw_crops(self, width: int, height: int) -> list[Crop]:
        """Both views' crop boxes and flips for an image of that size, from torch's global generator."""
        u = torch.rand(2 * DRAWS_PER_CROP).tolist()  # one call: a fixed number of draws per sample
        return [
            random_resized_crop(width, height, self.scale, self.ratio, u[k * DRAWS_PER_CROP :], self.flip_prob)
            for k in range(2)
        ]

    def draft_size(self, crops: list[Crop], width: int, height: int) -> tuple[int, int] | None:
        """The smallest decode size at which the raw view and every crop still have at least as many
        source pixels as output pixels (None: no reduction possible, decode everything)."""
        f = max(self.raw_size / min(width, height), *(self.view_size / min(c.height, c.width) for c in crops))
        return (math.ceil(width * f), math.ceil(height * f)) if f <= 0.5 else None

    def load(self, path: str, min_size: int = 1) -> dict[str, torch.Tensor | np.ndarray]:
        """Decode ``path`` (at reduced scale where the crops allow it) and make the sample."""
        plan: dict = {}  # the stored size and the crops drawn from it, before decoding

        def request(size: tuple[int, int]) -> tuple[int, int] | None:
            plan["size"], plan["crops"] = size, self.draw_crops(*size)
            return self.draft_size(plan["crops"], *size) if self.draft else None

        img = open_rgb(path, min_size, draft=request)
        return self._sample(img, plan["crops"], plan["size"])

    def __call__(self, img: Image.Image) -> dict[str, torch.Tensor | np.ndarray]:
        """The sample of an already decoded RGB image."""
        return self._sample(img, self.draw_crops(*img.size), img.size)

    def raw_view(self, img: Image.Image) -> Image.Image:
        """The whole image resized to R×R: deterministic, the input of the region prior."""
        return _to_pil(resize_bicubic(_from_pil(img), self.raw_size, self.resampler))

    def _sample(
        self, img: Image.Image, crops: list[Crop], stored: tuple[int, int]
    ) -> dict[str, torch.Tensor | np.ndarray]:
        pixels = _from_pil(img)
        height, width = pixels.shape[1:]
        fy, fx = height / stored[1], width / stored[0]  # 1 unless decoded at reduced scale
        views, boxes = [], []  # views as uint8[S,S,3]: the decoder's layout, kept until the device
        for c in crops:
            top, left = min(round(c.top * fy), height - 1), min(round(c.left * fx), width - 1)
            bottom = min(max(top + 1, round((c.top + c.height) * fy)), height)
            right = min(max(left + 1, round((c.left + c.width) * fx)), width)
            view = resize_bicubic(pixels[:, top:bottom, left:right], self.view_size, self.resampler).permute(1, 2, 0)
            views.append(view.flip(1) if c.flip else view)
            boxes.append([top / height, left / width, bottom / height, right / width, float(c.flip)])
        params = sample_two_views(self.photometric)
        if self.augment_on == "cpu":
            views = [
                torch.from_numpy(np.array(apply_photometric_pil(Image.fromarray(v.numpy()), p, self.blur)))
                for v, p in zip(views, params)
            ]
        raw = resize_bicubic(pixels, self.raw_size, self.resampler).permute(1, 2, 0)
        out: dict[str, torch.Tensor | np.ndarray] = {
            "views": torch.stack(views).permute(0, 3, 1, 2),  # [2,3,S,S] with channels-last strides
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "raw": raw.permute(2, 0, 1),
            "raw_rgb": raw.numpy(),
        }
        if self.augment_on == "device":
            out["photometric"] = params
        return out


DRAWS_PER_CROP = 41  # 10 attempts x 4 uniforms + the flip


def random_resized_crop(
    width: int,
    height: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    u: list[float],
    flip_prob: float = 0.5,
) -> Crop:
    """torchvision's ``RandomResizedCrop.get_params`` (10 tries of area ~ U(scale), log-aspect ~
    U(log ratio), then the central crop clamped to ``ratio``) + a flip, read from ``DRAWS_PER_CROP``
    uniforms in [0, 1) instead of ~10 generator calls (a tenth of the time, the same distribution)."""
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    flip = u[40] < flip_prob
    for k in range(10):
        a, b, y, x = u[4 * k : 4 * k + 4]
        target = area * (scale[0] + a * (scale[1] - scale[0]))
        aspect = math.exp(log_lo + b * (log_hi - log_lo))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return Crop(int(y * (height - h + 1)), int(x * (width - w + 1)), h, w, flip)
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return Crop((height - h) // 2, (width - w) // 2, h, w, flip)
