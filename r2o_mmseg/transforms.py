"""Train-time resizes the transfer protocols need and mmseg 1.x lacks.

``RandomRatioResize``: the image's own size × U(lo, hi), the authors' ``Resize(img_scale=None, ratio_range=...)``.

mmseg 0.x's ``Resize(img_scale=None, ratio_range=(0.5, 2.0))`` (the authors' PASCAL VOC config) scales each
image by a ratio drawn from the range: target scale ``(int(w * r), int(h * r))`` with
``r = np.random.random_sample() * (hi - lo) + lo``, then ``mmcv.imrescale`` with that scale (keep ratio;
the label map with nearest-neighbour). mmcv 2's ``RandomResize`` always multiplies a *fixed* ``scale``, so it
cannot say "the original size"; this transform does, with the same draw and the same rescale, through
mmseg 1.x's ``Resize`` (which resizes every map in ``seg_fields``).

``TorchvisionRandomResizedCrop``: torchvision's ``RandomResizedCrop`` on the image and its label maps together,
as the dense linear-probe protocols (Leopart's ``linear_finetune.py``) train: the box from torchvision's own
``RandomResizedCrop.get_params`` (same draws from torch's generator), then the crop resized with PIL, bilinear
for the image and nearest for labels, as ``torchvision.transforms.functional.resized_crop`` does on PIL images.
Neither mmcv 2 nor mmseg 1.x has a random-resized crop that also crops the segmentation map.
"""

from __future__ import annotations

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmseg.datasets.transforms import Resize
from mmseg.registry import TRANSFORMS


class RandomRatioResize(Resize):
    """Resize to the input's size × r, r ~ U(ratio_range), keeping the aspect ratio.

    Args:
        ratio_range: (min_ratio, max_ratio), 0 < min_ratio <= max_ratio.
        backend, interpolation: as mmcv's ``Resize``.
    """

    def __init__(
        self, ratio_range: tuple[float, float] = (0.5, 2.0), backend: str = "cv2", interpolation: str = "bilinear"
    ) -> None:
        if len(ratio_range) != 2 or not 0 < ratio_range[0] <= ratio_range[1]:
            raise ValueError(
                f"RandomRatioResize: ratio_range must be (min, max) with 0 < min <= max, got {ratio_range}"
            )
        super().__init__(scale_factor=1.0, keep_ratio=True, backend=backend, interpolation=interpolation)
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))

    @cache_randomness
    def _random_ratio(self) -> float:
        lo, hi = self.ratio_range
        return float(np.random.random_sample() * (hi - lo) + lo)

    def transform(self, results: dict) -> dict:
        h, w = results["img"].shape[:2]
        ratio = self._random_ratio()
        results["scale"] = (int(w * ratio), int(h * ratio))
        self._resize_img(results)
        self._resize_bboxes(results)
        self._resize_seg(results)
        self._resize_keypoints(results)
        return results

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(ratio_range={self.ratio_range}, backend={self.backend})"


class TorchvisionRandomResizedCrop(BaseTransform):
    """torchvision's ``RandomResizedCrop(size, scale, ratio)`` on ``img`` and every map in ``seg_fields``.

    Args:
        size: output (h, w), or one int for a square.
        scale: (min, max) area fraction of the crop, as torchvision's.
        ratio: (min, max) aspect ratio w / h of the crop, as torchvision's.
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    ) -> None:
        from torchvision.transforms import RandomResizedCrop

        self.size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if not 0 < scale[0] <= scale[1] or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(
                f"TorchvisionRandomResizedCrop: scale and ratio must be (min, max) with 0 < min <= max, "
                f"got scale={scale}, ratio={ratio}"
            )
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self._get_params = RandomResizedCrop.get_params

    def transform(self, results: dict) -> dict:
        img = results["img"]
        # torchvision reads only the (h, w) of a tensor: a zero-copy view of the HxWxC array as CxHxW
        top, left, h, w = self._get_params(
            torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1), self.scale, self.ratio
        )
        out_w_h = (self.size[1], self.size[0])
        crop = img[top : top + h, left : left + w]
        results["img"] = mmcv.imresize(crop, out_w_h, interpolation="bilinear", backend="pillow")
        for key in results.get("seg_fields", []):
            seg = results[key][top : top + h, left : left + w]
            results[key] = mmcv.imresize(seg, out_w_h, interpolation="nearest", backend="pillow")
        results["img_shape"] = results["img"].shape[:2]
        return results

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(size={self.size}, scale={self.scale}, ratio={self.ratio})"


_TRANSFORMS = {"RandomRatioResize": RandomRatioResize, "TorchvisionRandomResizedCrop": TorchvisionRandomResizedCrop}


def register() -> None:
    """Register the transforms in mmseg's TRANSFORMS once; importing this package twice is harmless."""
    for name, module in _TRANSFORMS.items():
        existing = TRANSFORMS.module_dict.get(name)
        if existing is None:
            TRANSFORMS.register_module(name=name, module=module)
        elif existing.__qualname__ != module.__qualname__ or existing.__module__ != module.__module__:
            raise KeyError(f"another transform is already registered as {name} in mmseg's TRANSFORMS: {existing}")
