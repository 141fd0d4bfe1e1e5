"""The two augmented views, their crop boxes and flips, and the un-augmented raw view.

BYOL's augmentation (docs/method.md, step 1), built from torchvision's transforms. Randomness comes from
torch's global generator; the dataset seeds it per sample (see ``dataset.py``), so a sample is a pure
function of (seed, epoch, index) — which is what makes resumed runs exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PILGaussianBlur(torch.nn.Module):
    """Gaussian blur with sigma ~ U(lo, hi), by PIL's ImageFilter (about 20x faster than torchvision's
    GaussianBlur on a PIL image, which converts to a tensor and convolves a 23-tap kernel; for
    sigma <= 2 a 23-tap kernel already holds the whole Gaussian, so the results agree to rounding)."""

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0)) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, img: Image.Image) -> Image.Image:
        sigma = float(torch.empty(1).uniform_(*self.sigma))
        return img.filter(ImageFilter.GaussianBlur(radius=sigma))


def photometric_augmentation(blur_p: float, solarize_p: float, blur: str = "pil") -> T.Compose:
    """BYOL's colour pipeline for one view (operates on a PIL image, returns a normalised tensor).

    ``blur="torchvision"`` uses torchvision's GaussianBlur(23) instead of PIL's (slower; benchmarks).
    """
    blur_op = PILGaussianBlur((0.1, 2.0)) if blur == "pil" else T.GaussianBlur(kernel_size=23, sigma=(0.1, 2.0))
    return T.Compose(
        [
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([blur_op], p=blur_p),
            T.RandomSolarize(threshold=128, p=solarize_p),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


@dataclass
class TwoViewTransform:
    """PIL image → dict(views float[2,3,S,S], boxes float[2,5], raw float[3,R,R], raw_rgb uint8[R,R,3]).

    ``boxes[v] = (y0, x0, y1, x1, flipped)`` with coordinates normalised to [0, 1] of the full image.
    """

    view_size: int = 224
    raw_size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    blur: str = "pil"  # pil | torchvision
    flip_prob: float = 0.5  # the authors' code always flips both views (a bug): 1.0

    def __post_init__(self) -> None:
        self.photometric = (
            photometric_augmentation(1.0, 0.0, self.blur),
            photometric_augmentation(0.1, 0.2, self.blur),
        )
        self.normalize = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def raw_view(self, img: Image.Image) -> Image.Image:
        """The whole image resized to R×R: deterministic, the input of the region prior."""
        return img.resize((self.raw_size, self.raw_size), Image.BICUBIC)

    def __call__(self, img: Image.Image) -> dict[str, torch.Tensor | np.ndarray]:
        width, height = img.size
        views, boxes = [], []
        for v in range(2):
            i, j, h, w = T.RandomResizedCrop.get_params(img, list(self.scale), list(self.ratio))
            flip = bool(torch.rand(1).item() < self.flip_prob)
            view = TF.resized_crop(img, i, j, h, w, [self.view_size, self.view_size], InterpolationMode.BICUBIC)
            if flip:
                view = TF.hflip(view)
            views.append(self.photometric[v](view))
            boxes.append([i / height, j / width, (i + h) / height, (j + w) / width, float(flip)])
        raw = self.raw_view(img)
        return {
            "views": torch.stack(views),
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "raw": self.normalize(raw),
            "raw_rgb": np.asarray(raw, dtype=np.uint8),
        }
