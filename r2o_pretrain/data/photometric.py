"""BYOL's photometric augmentation as explicit per-view parameters, and its CPU (PIL) application.

The parameters of one view are drawn once (``sample_photometric``) from torch's global generator, which
the dataset seeds per (seed, epoch, index); they are then applied either in the loader worker with PIL
(``apply_photometric_pil``, ``data.augment_on=cpu``) or for a whole batch on the training device
(``device_augment.augment_batch``, ``data.augment_on=device``). Both read the same numbers, so the two
paths see the same augmentation for the same sample.

Distributions (docs/method.md step 1, BYOL): colour jitter with p=0.8 — brightness and contrast factors
U(0.6, 1.4), saturation U(0.8, 1.2), hue shift U(-0.1, 0.1), applied in a random order as torchvision's
ColorJitter does; grayscale p=0.2; Gaussian blur, sigma U(0.1, 2), p=1.0 (view 1) / 0.1 (view 2);
solarize at 128/255, p=0.0 (view 1) / 0.2 (view 2).
"""

from __future__ import annotations

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

BYOL_BLUR_P = (1.0, 0.1)  # view 1, view 2
BYOL_SOLARIZE_P = (0.0, 0.2)


def sample_photometric(blur_p: float, solarize_p: float, u: list[float]) -> torch.Tensor:
    """float[NUM_PARAMS] for one view from ``DRAWS_PER_VIEW`` uniforms in [0, 1)."""
    p = torch.zeros(NUM_PARAMS)
    p[JITTER] = float(u[0] < 0.8)
    p[ORDER] = torch.tensor(u[1:5]).argsort().float()  # a uniformly random permutation
    p[BRIGHTNESS] = 0.6 + 0.8 * u[5]
    p[CONTRAST] = 0.6 + 0.8 * u[6]
    p[SATURATION] = 0.8 + 0.4 * u[7]
    p[HUE] = -0.1 + 0.2 * u[8]
    p[GRAYSCALE] = float(u[9] < 0.2)
    p[BLUR_SIGMA] = 0.1 + 1.9 * u[10] if u[11] < blur_p else 0.0
    p[SOLARIZE] = float(u[12] < solarize_p)
    return p


DRAWS_PER_VIEW = 13


def sample_two_views() -> torch.Tensor:
    """float[2, NUM_PARAMS]: view 1 (blur always, no solarize) and view 2 (blur 0.1, solarize 0.2), from
    one call to torch's global generator."""
    u = torch.rand(2 * DRAWS_PER_VIEW).tolist()
    return torch.stack(
        [
            sample_photometric(b, s, u[v * DRAWS_PER_VIEW :])
            for v, (b, s) in enumerate(zip(BYOL_BLUR_P, BYOL_SOLARIZE_P))
        ]
    )


_PIL_JITTER_OPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def apply_photometric_pil(img: Image.Image, params: torch.Tensor) -> Image.Image:
    """RGB PIL image → RGB PIL image with the augmentation ``params`` (float[NUM_PARAMS]) applied.

    torchvision's PIL ops, as in ``T.ColorJitter`` / ``T.RandomGrayscale`` / ``T.RandomSolarize``; the
    blur is PIL's ``GaussianBlur`` (see ``views.PILGaussianBlur``).
    """
    p = params.tolist()
    if p[JITTER]:
        for op in p[ORDER]:
            img = _PIL_JITTER_OPS[int(op)](img, p[FACTORS[int(op)]])
    if p[GRAYSCALE]:
        img = TF.rgb_to_grayscale(img, num_output_channels=3)
    if p[BLUR_SIGMA] > 0:
        img = img.filter(ImageFilter.GaussianBlur(radius=p[BLUR_SIGMA]))
    if p[SOLARIZE]:
        img = TF.solarize(img, 128)
    return img
