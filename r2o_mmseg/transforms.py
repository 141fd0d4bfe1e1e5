"""``RandomRatioResize``: the image's own size × U(lo, hi), the authors' ``Resize(img_scale=None, ratio_range=...)``.

mmseg 0.x's ``Resize(img_scale=None, ratio_range=(0.5, 2.0))`` (the authors' PASCAL VOC config) scales each
image by a ratio drawn from the range: target scale ``(int(w * r), int(h * r))`` with
``r = np.random.random_sample() * (hi - lo) + lo``, then ``mmcv.imrescale`` with that scale (keep ratio;
the label map with nearest-neighbour). mmcv 2's ``RandomResize`` always multiplies a *fixed* ``scale``, so it
cannot say "the original size"; this transform does, with the same draw and the same rescale, through
mmseg 1.x's ``Resize`` (which resizes every map in ``seg_fields``).
"""

from __future__ import annotations

import numpy as np
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


def register() -> None:
    """Register RandomRatioResize in mmseg's TRANSFORMS once; importing this package twice is harmless."""
    existing = TRANSFORMS.module_dict.get("RandomRatioResize")
    if existing is None:
        TRANSFORMS.register_module(name="RandomRatioResize", module=RandomRatioResize)
    elif existing.__qualname__ != RandomRatioResize.__qualname__ or existing.__module__ != RandomRatioResize.__module__:
        raise KeyError(
            f"another transform is already registered as RandomRatioResize in mmseg's TRANSFORMS: {existing}"
        )
