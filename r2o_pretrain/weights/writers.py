"""Writing ResNet weights for torchvision, detectron2 and mmseg/mmengine."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from .checkpoint_file import atomic_save
from .errors import ConversionError
from .formats import ResNetWeights
from .resnet_keys import infer_depth, torchvision_to_detectron2

TARGETS = ("torchvision", "d2", "mmseg")


def to_torchvision(weights: ResNetWeights) -> dict[str, Any]:
    """A torchvision ResNet state dict without the classifier: ``resnetN().load_state_dict(sd, strict=False)``
    (what it then reports missing: ``torchvision_loading``)."""
    return dict(weights.state)


def torchvision_loading(path: str | os.PathLike, state: dict[str, Any]) -> str:
    """How torchvision loads the backbone file ``path`` holding ``state`` (torchvision keys, no fc), and
    exactly which keys ``load_state_dict`` then reports missing: the classifier ``fc.*`` only (a file without
    the BatchNorm ``num_batches_tracked`` counters, as tools/convert.py writes, gets them from torch's
    BatchNorm itself, unreported)."""
    return (
        f"load it in Python (import torch, torchvision) with `torchvision.models.resnet{infer_depth(state)}()"
        f".load_state_dict(torch.load({str(path)!r}, weights_only=True), strict=False)`; the keys it reports "
        "missing are exactly fc.weight and fc.bias (the classifier, which pretraining does not train: replace it "
        "for your task)"
    )


def to_detectron2(weights: ResNetWeights) -> dict[str, Any]:
    """detectron2's pickle layout: numpy arrays under d2 ResNet names, matched by d2's heuristics.

    The model must be built with RGB input, torchvision mean/std and ``STRIDE_IN_1X1: False``.
    """
    model = {
        torchvision_to_detectron2(k): v.cpu().numpy()
        for k, v in weights.state.items()
        if not k.endswith("num_batches_tracked")
    }
    return {"model": model, "__author__": "r2o", "matching_heuristics": True}


def to_mmseg(weights: ResNetWeights) -> dict[str, Any]:
    """An mmengine checkpoint that mmseg's ``ResNet`` (V1b, style pytorch) loads via ``init_cfg``."""
    return {
        "state_dict": dict(weights.state),
        "meta": {"r2o_source": weights.source, "r2o_source_format": weights.source_format, "depth": weights.depth},
    }


def write_weights(weights: ResNetWeights, output: str | os.PathLike, target: str) -> Path:
    """Write ``weights`` in the ``target`` format; never over the input file, atomically."""
    if target not in TARGETS:
        raise ConversionError(f"unknown output format '{target}' (choose from {', '.join(TARGETS)})")
    output = Path(output)
    source = Path(weights.source)
    if output.exists() and source.exists() and os.path.samefile(output, source):
        raise ConversionError(f"refusing to overwrite the input file {source}; choose another output path")
    if target == "d2":
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(to_detectron2(weights), f)
        os.replace(tmp, output)
    else:
        atomic_save(to_torchvision(weights) if target == "torchvision" else to_mmseg(weights), output)
    return output
