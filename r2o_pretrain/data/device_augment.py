"""The step's side of the loader: uint8 batches → normalised float views on the training device, with
BYOL's photometric augmentation applied there for the whole batch when ``data.augment_on=device``.

The loader ships uint8 pictures (4× less to copy, pin and transfer than float) and normalises nothing;
``batch_on_device`` does the rest where the step runs. The augmentation is written as batched tensor
ops with per-sample parameters (``photometric.py`` draws them in the worker, per (seed, epoch, index)):
torchvision's tensor functionals take one scalar factor per call, so per-sample parameters would need a
Python loop of ~6 calls per image (thousands of small kernel launches per batch on a GPU); here each op
is a few launches for the whole batch. The ops follow torchvision's tensor formulas (ColorJitter,
Grayscale, GaussianBlur with a 23-tap kernel and reflect padding, Solarize at 128/255), in float without
rounding to uint8 between ops. The blur's kernel and border are OpenCV's (``cv2.GaussianBlur(img, (23, 23),
sigma)``, the authors' blur, whose default border reflect-101 is torch's ``reflect``): rounded, it is within
1 grey level of OpenCV's uint8 result (benchmarks/departures.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as F2

from .photometric import BLUR_KERNEL, BLUR_SIGMA, FACTORS, GRAYSCALE, JITTER, ORDER, SOLARIZE
from .views import IMAGENET_MEAN, IMAGENET_STD


def _gray(x: torch.Tensor) -> torch.Tensor:
    """float[N,3,H,W] → float[N,1,H,W] luma (torchvision's weights)."""
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """float[N,3,H,W] in [0,1], factor float[N] → float[N,3,H,W]."""
    return (x * factor.view(-1, 1, 1, 1)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the mean luma of each image."""
    return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the luma image."""
    return _blend(x, _gray(x), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``shift`` (float[N], in turns, |shift| <= 0.5) in HSV space."""
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    r, g, b = x.unbind(1)
    h = torch.where(maxc == r, (g - b) / safe, torch.where(maxc == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    h6 = torch.remainder(h + 6 * shift.view(-1, 1, 1), 6.0)  # hue in [0, 6)
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    v = maxc
    out = []
    for n in (5.0, 3.0, 1.0):  # R, G, B of the HSV → RGB formula f(n) = v - v s max(0, min(k, 4 - k, 1))
        k = torch.remainder(n + h6, 6.0)
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(out, dim=1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    return _gray(x).expand_as(x).contiguous()


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int = BLUR_KERNEL) -> torch.Tensor:
    """float[N,3,H,W], sigma float[N] → blurred (separable kernel of ``kernel_size`` taps, reflect padding)."""
    n, c, h, w = x.shape
    half = (kernel_size - 1) / 2
    t = torch.linspace(-half, half, kernel_size, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t.view(1, -1) / sigma.view(-1, 1).to(x.dtype)) ** 2)
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # [N*C, K]
    pad = kernel_size // 2
    y = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, 1, kernel_size), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, kernel_size, 1), groups=n * c)
    return y.view(n, c, h, w)


def solarize(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 128 / 255, 1 - x, x)


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def _rows(mask: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """Indices of the true entries of a CPU mask, on ``device`` (no device sync); None when empty."""
    idx = mask.nonzero().squeeze(1)
    return idx.to(device, non_blocking=True) if len(idx) else None


def augment_batch(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """float[N,3,H,W] in [0,1] and params float[N, NUM_PARAMS] (``photometric.py``) → augmented float.

    ``params`` may live on the CPU (as the loader delivers them): which op touches which image is decided
    there, so the device never has to report back. Each op runs once on the images that need it.
    """
    p = params.detach().cpu()
    x = x.clone()

    def apply(mask: torch.Tensor, op, *args) -> None:
        rows = _rows(mask, x.device)
        if rows is not None:
            x[rows] = op(x[rows], *(a[mask].to(x.device, x.dtype, non_blocking=True) for a in args))

    jitter = p[:, JITTER] > 0
    order = p[:, ORDER].long()
    for position in range(4):
        for op_id, op in enumerate(_JITTER_OPS):
            apply(jitter & (order[:, position] == op_id), op, p[:, FACTORS[op_id]])
    apply(p[:, GRAYSCALE] > 0, grayscale)
    apply(p[:, BLUR_SIGMA] > 0, gaussian_blur, p[:, BLUR_SIGMA])
    apply(p[:, SOLARIZE] > 0, solarize)
    return x


def augment_per_sample_torchvision(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """The same augmentation by torchvision's v2 tensor functionals, one image at a time (scalar
    factors): the definition ``augment_batch`` is tested against, and the slow way the GPU benchmark
    times. float[N,3,H,W] in [0,1], params float[N, NUM_PARAMS] → float[N,3,H,W]."""
    ops = (F2.adjust_brightness, F2.adjust_contrast, F2.adjust_saturation, F2.adjust_hue)
    out = []
    for img, p in zip(x, params.tolist()):
        if p[JITTER]:
            for op in p[ORDER]:
                img = ops[int(op)](img, p[FACTORS[int(op)]])
        if p[GRAYSCALE]:
            img = F2.rgb_to_grayscale(img, num_output_channels=3)
        if p[BLUR_SIGMA] > 0:
            img = F2.gaussian_blur(img, [BLUR_KERNEL, BLUR_KERNEL], [p[BLUR_SIGMA]] * 2)
        if p[SOLARIZE]:
            img = F2.solarize(img, 128 / 255)
        out.append(img)
    return torch.stack(out)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """float[...,3,H,W] in [0,1] → ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(3, 1, 1)
    return (x - mean) / std


def unnormalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised float[...,3,H,W] → float32 in [0,1] (clamped): the inverse of ``normalize``."""
    mean = x.new_tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = x.new_tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    return (x.float() * std + mean).clamp(0, 1)


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pictures → float32 in [0, 1]."""
    return x.float().div_(255)


def to_input_tensor(rgb: np.ndarray) -> torch.Tensor:
    """A picture uint8[H,W,3] → the encoder's input float32[3,H,W], ImageNet-normalised."""
    return normalize_images(torch.from_numpy(np.require(rgb, requirements=["C", "W"])).permute(2, 0, 1))


def normalize_images(x: torch.Tensor) -> torch.Tensor:
    """uint8[...,3,H,W] → ImageNet-normalised float32; a float tensor is taken as already normalised."""
    return normalize(to_unit_float(x)) if x.dtype == torch.uint8 else x


def batch_on_device(
    batch: dict[str, Any], device: torch.device | str, non_blocking: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A loader batch → (views float[B,2,3,S,S], boxes float[B,2,5], raw float[B,3,R,R], superpixels
    int64[B,R,R]) on ``device``, normalised, with the photometric augmentation applied when the batch
    carries its parameters (``"photometric"``, float[B,2,NUM_PARAMS]: ``data.augment_on=device``)."""
    views = batch["views"].to(device, non_blocking=non_blocking)
    raw = batch["raw"].to(device, non_blocking=non_blocking)
    boxes = batch["boxes"].to(device, non_blocking=non_blocking)
    superpixels = batch["superpixels"].to(device, non_blocking=non_blocking).long()
    if "photometric" in batch:
        b, v = views.shape[:2]
        flat = augment_batch(to_unit_float(views.flatten(0, 1)), batch["photometric"].flatten(0, 1))
        views = normalize(flat).reshape(b, v, *flat.shape[1:])
    else:
        views = normalize_images(views)
    # the loader's pictures are channels-last; the model gets plain NCHW (one transpose, on the device)
    return views.contiguous(), boxes, normalize_images(raw).contiguous(), superpixels
