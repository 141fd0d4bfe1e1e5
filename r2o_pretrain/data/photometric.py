"""BYOL's photometric augmentation as explicit per-view parameters, and its CPU (PIL) application.

The parameters of one view are drawn once (``sample_photometric``) from torch's global generator, which
the dataset seeds per (seed, epoch, index); they are then applied either in the loader worker with PIL
(``apply_photometric_pil``, ``data.augment_on=cpu``) or for a whole batch on the training device
(``device_augment.augment_batch``, ``data.augment_on=device``). Both read the same numbers, so the two
paths see the same augmentation for the same sample.

Distributions (docs/method.md step 1, BYOL): colour jitter with p=0.8 — brightness and contrast factors
U(0.6, 1.4), saturation U(0.8, 1.2), hue shift U(-0.1, 0.1), applied in a random order as torchvision's
ColorJitter does; grayscale p=0.2; Gaussian blur, sigma U(0.1, 2), p=1.0 (view 1) / 0.1 (view 2) — on the
CPU the authors' ``cv2.GaussianBlur`` with a 23×23 kernel (``data.blur=pil``: PIL's faster box-blur
approximation, up to 7 grey levels away), on the device the same 23-tap kernel in float;
solarize at 128/255, p=0.0 (view 1) / 0.2 (view 2). ``PhotometricSpec`` holds these numbers; the
``data.color_jitter*``, ``data.grayscale_p``, ``data.blur_p`` and ``data.solarize_p`` settings change them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, ImageFilter
from torchvision.transforms import functional as TF

# Layout of one view's parameter vector float[NUM_PARAMS].
JITTER = 0  # 1.0: the colour jitter applies
ORDER = slice(1, 5)  # a permutation of 0..3: the order of the four jitter ops below
BRIGHTNESS, CONTRAST, SATURATION, HUE = 5, 6, 7, 8  # op k of the order reads column FACTORS[k]
FACTORS = (BRIGHTNESS, CONTRAST, SATURATION, HUE)
GRAYSCALE = 9  # 1.0: convert to grayscale (three equal channels)
BLUR_SIGMA = 10  # > 0: Gaussian blur with this sigma; 0: no blur
SOLARIZE = 11  # 1.0: invert the values >= 128/255
NUM_PARAMS = 12


@dataclass(frozen=True)
class PhotometricSpec:
    """The distributions the two views' parameters are drawn from; the defaults are BYOL's.

    ``color_jitter`` holds torchvision ``ColorJitter``'s (brightness, contrast, saturation, hue) strengths: a factor
    is drawn from U(1 - s, 1 + s) (hue: a shift from U(-s, s)); a strength of 0 leaves that property alone.
    ``blur_p`` and ``solarize_p`` are per view (view 1, view 2). Every spec draws the same number of
    uniforms, so changing it changes no other random choice (crops, flips) of a sample. The fields are
    the ``data.*`` settings of the same names; ``config.validate`` checks their ranges.
    """

    color_jitter_p: float = 0.8
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    grayscale_p: float = 0.2
    blur_p: tuple[float, float] = (1.0, 0.1)
    solarize_p: tuple[float, float] = (0.0, 0.2)

    @classmethod
    def from_settings(cls, data: Any) -> PhotometricSpec:
        """The spec named by a ``DataConfig``'s fields of the same names (lists from YAML become tuples).

        ``config.DataConfig`` repeats these defaults because config.py imports no torch;
        tests/test_loader_pipeline.py asserts the two sets are equal.
        """
        values = {f.name: getattr(data, f.name) for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


BYOL = PhotometricSpec()


def sample_photometric(spec: PhotometricSpec, view: int, u: list[float]) -> torch.Tensor:
    """float[NUM_PARAMS] for view ``view`` (0 or 1) from ``DRAWS_PER_VIEW`` uniforms in [0, 1)."""
    b, c, s, h = spec.color_jitter
    p = torch.zeros(NUM_PARAMS)
    p[JITTER] = float(u[0] < spec.color_jitter_p)
    p[ORDER] = torch.tensor(u[1:5]).argsort().float()  # a uniformly random permutation
    p[BRIGHTNESS] = 1 - b + 2 * b * u[5]
    p[CONTRAST] = 1 - c + 2 * c * u[6]
    p[SATURATION] = 1 - s + 2 * s * u[7]
    p[HUE] = -h + 2 * h * u[8]
    p[GRAYSCALE] = float(u[9] < spec.grayscale_p)
    p[BLUR_SIGMA] = 0.1 + 1.9 * u[10] if u[11] < spec.blur_p[view] else 0.0
    p[SOLARIZE] = float(u[12] < spec.solarize_p[view])
    return p


DRAWS_PER_VIEW = 13


def sample_two_views(spec: PhotometricSpec = BYOL) -> torch.Tensor:
    """float[2, NUM_PARAMS]: both views' parameters (BYOL: view 1 blurred always and never solarized,
    view 2 blurred with p 0.1 and solarized with p 0.2), from one call to torch's global generator."""
    u = torch.rand(2 * DRAWS_PER_VIEW).tolist()
    return torch.stack([sample_photometric(spec, v, u[v * DRAWS_PER_VIEW :]) for v in range(2)])


_PIL_JITTER_OPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


# The loader parallelises over workers; a 224² blur is no faster with OpenCV's own threads (measured:
# 1.0 ms with one thread, 1.3 ms with two), and many workers × many threads would oversubscribe the CPU.
cv2.setNumThreads(1)

BLUR_KERNEL = 23  # BYOL's and the authors' kernel for 224² views
BLURS = ("opencv", "pil")


def blur_pil_image(img: Image.Image, sigma: float, blur: str = "opencv") -> Image.Image:
    """Gaussian blur of an RGB PIL image. ``opencv``: the authors' ``cv2.GaussianBlur(array, (23, 23),
    sigma)`` (separable 23-tap kernel, reflect-101 border, uint8 output); ``pil``: PIL's
    ``ImageFilter.GaussianBlur(radius=sigma)``, a box-blur approximation."""
    if blur == "opencv":
        return Image.fromarray(cv2.GaussianBlur(np.asarray(img), (BLUR_KERNEL, BLUR_KERNEL), sigma))
    if blur == "pil":
        return img.filter(ImageFilter.GaussianBlur(radius=sigma))
    raise ValueError(f"blur must be one of {BLURS}, got '{blur}'")


def apply_photometric_pil(img: Image.Image, params: torch.Tensor, blur: str = "opencv") -> Image.Image:
    """RGB PIL image → RGB PIL image with the augmentation ``params`` (float[NUM_PARAMS]) applied.

    torchvision's PIL ops, as in ``T.ColorJitter`` / ``T.RandomGrayscale`` / ``T.RandomSolarize``; the
    blur by ``blur_pil_image`` (``blur``: opencv | pil, the ``data.blur`` setting).
    """
    p = params.tolist()
    if p[JITTER]:
        for op in p[ORDER]:
            img = _PIL_JITTER_OPS[int(op)](img, p[FACTORS[int(op)]])
    if p[GRAYSCALE]:
        img = TF.rgb_to_grayscale(img, num_output_channels=3)
    if p[BLUR_SIGMA] > 0:
        img = blur_pil_image(img, p[BLUR_SIGMA], blur)
    if p[SOLARIZE]:
        img = TF.solarize(img, 128)
    return img
