"""Caffe2-named (Detectron / MSRA) ResNet pickles: recognised, and refused with the reason."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ConversionError

# Caffe2 (Detectron / MSRA) ResNet names: conv1_w, res_conv1_bn_s, res2_0_branch2a_w, res2_0_branch1_bn_b
_CAFFE2_KEY = re.compile(r"^(conv1_w|res_conv1_bn_[sb]|res\d+_\d+_branch\d[a-c]?_(w|b|bn_[sb]))$")


def refuse_caffe2(obj: dict, path: Path) -> None:
    """Raise for Caffe2-named MSRA/Detectron ResNets: they are another network, not a renamed one."""
    model = obj.get("blobs", obj.get("model", obj))
    names = [k for k in model if isinstance(k, str)] if isinstance(model, dict) else []
    caffe2_names = [k for k in names if _CAFFE2_KEY.match(k)]
    if obj.get("__author__") != "Caffe2" and "blobs" not in obj and not caffe2_names:
        return
    example = f" (e.g. '{caffe2_names[0]}')" if caffe2_names else ""
    raise ConversionError(
        f"{path} is a Caffe2/MSRA ResNet in detectron2's Caffe2 naming{example}: its BatchNorm is folded into a "
        "fixed per-channel scale and bias (no running statistics), its bottlenecks stride in the 1x1 conv, and "
        "it expects BGR 0-255 input. The R2O backbone is torchvision's ResNet (stride in the 3x3, RGB with "
        "torchvision's mean/std), so these weights cannot be converted into it. Use a torchvision-layout file "
        "instead (a torchvision state dict, or detectron2's torchvision-converted R-50.pkl), or detectron2's "
        "own ResNet configs (STRIDE_IN_1X1: True, BGR) for the MSRA weights."
    )
