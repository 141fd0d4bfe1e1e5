"""Detect and read every supported ResNet checkpoint format into one torchvision-keyed state dict.

Formats (detected from the contents, not the file name):
  r2o-pretrain      this project's training checkpoint (online or target encoder)
  r2o-official      the authors' checkpoints: [module.]{online,target}_network.encoder.{0,1,4-7}.*
  torchvision       a plain torchvision ResNet state dict (our export, or torchvision's own; fc dropped)
  mmengine          {"state_dict": ...} / {"model": ...} wrappers, with or without a ``backbone.`` prefix
  detectron2        {"model": {d2 key: array}, "__author__": ...} pickles of torchvision layout (our
                    converter's output, the model zoo's torchvision-converted R-50.pkl); Caffe2/MSRA
                    ones are refused (see ``caffe2.py``)
Files are read by ``files.read_weights_file``: weights only, never code, unless the caller explicitly
allows full unpickling.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from .caffe2 import refuse_caffe2
from .checkpoint_file import PRETRAIN_FORMAT
from .errors import ConversionError
from .files import read_weights_file
from .report import compare_state
from .resnet_keys import detectron2_to_torchvision, infer_depth, official_to_torchvision


@dataclass
class ResNetWeights:
    state: dict[str, torch.Tensor]  # torchvision keys, no fc
    depth: int
    source: str
    source_format: str
    notes: list[str] = field(default_factory=list)


def _as_tensors(state: Any) -> dict[str, torch.Tensor]:
    """The tensors (numpy arrays made tensors) under string keys of ``state``; nothing for a non-dict."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items() if isinstance(state, dict) else ():
        if not isinstance(k, str):
            continue
        if isinstance(v, np.ndarray):
            try:
                v = torch.from_numpy(np.ascontiguousarray(v))
            except TypeError:  # object or string arrays: not weights
                continue
        if isinstance(v, torch.Tensor):
            out[k] = v
    return out


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _has_prefix(state: dict, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in state)


def _extract(obj: Any, encoder: str, path: Path) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    notes: list[str] = []
    if not isinstance(obj, dict):
        raise ConversionError(f"{path} holds a {type(obj).__name__}, not a dict of weights")
    refuse_caffe2(obj, path)
    if obj.get("format") == PRETRAIN_FORMAT:
        model = _as_tensors(obj.get("model", {}))
        state = _strip(model, f"{encoder}_encoder.")
        return state, f"r2o-pretrain ({encoder} encoder, step {obj.get('step')})", notes
    fmt = "torchvision"
    for wrapper in ("state_dict", "model"):
        if isinstance(obj.get(wrapper), dict):
            fmt = "detectron2" if obj.get("__author__") or obj.get("matching_heuristics") else "mmengine"
            obj = obj[wrapper]
            break
    state = _as_tensors(obj)
    if not state:
        raise ConversionError(f"{path} contains no tensors")
    if all(k.startswith("module.") for k in state):
        state = _strip(state, "module.")
    net = f"{encoder}_network.encoder."
    if _has_prefix(state, "online_network.encoder.") or _has_prefix(state, "target_network.encoder."):
        if not _has_prefix(state, net):
            raise ConversionError(f"{path}: official R2O checkpoint without a {encoder} network")
        fpn = sum(k.startswith("_fpn.") for k in state)
        if fpn:  # the authors' lazily created layer getter: a second copy of the target encoder
            notes.append(f"ignored {fpn} '_fpn.*' tensors (the authors' duplicate of the target encoder)")
        state = {official_to_torchvision("encoder." + k): v for k, v in _strip(state, net).items()}
        return state, f"r2o-official ({encoder} encoder)", notes
    if _has_prefix(state, f"{encoder}_encoder."):  # our model's state dict without the checkpoint wrapper
        return _strip(state, f"{encoder}_encoder."), f"r2o-pretrain model state ({encoder} encoder)", notes
    for prefix in ("backbone.bottom_up.", "backbone."):
        if _has_prefix(state, prefix + "conv1.") or _has_prefix(state, prefix + "stem."):
            state = _strip(state, prefix)
            notes.append(f"took the '{prefix}' entries")
            break
    if _has_prefix(state, "stem.conv1."):
        if _has_prefix(state, "stem.fc."):  # detectron2's convert-torchvision-to-d2.py keeps fc as stem.fc
            notes.append("dropped the classifier (stem.fc.*)")
        state = {detectron2_to_torchvision(k): v for k, v in state.items() if k.startswith(("stem.conv1.", "res"))}
        return state, "detectron2", notes
    if "fc.weight" in state:
        notes.append("dropped the classifier (fc.*)")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    return state, fmt, notes


def read_resnet_weights(path: str | os.PathLike, encoder: str = "online", allow_pickle: bool = False) -> ResNetWeights:
    """Any supported checkpoint → torchvision-keyed ResNet weights, checked key by key and shape by shape.

    Raises ConversionError (naming the file, and listing missing, unexpected and mis-shaped tensors)
    unless every tensor of a torchvision ResNet-18/34/50/101/152 backbone is present with its shape.
    """
    return resnet_weights_from(read_weights_file(path, allow_pickle), path, encoder)


def resnet_weights_from(obj: Any, path: str | os.PathLike, encoder: str = "online") -> ResNetWeights:
    """``read_resnet_weights`` of a file already read by ``read_weights_file`` (``obj``)."""
    if encoder not in ("online", "target"):
        raise ConversionError(f"encoder must be 'online' or 'target', got '{encoder}'")
    path = Path(path)
    state, fmt, notes = _extract(obj, encoder, path)
    if not state:
        raise ConversionError(f"{path} ({fmt}): no ResNet encoder tensors found")
    try:
        depth = infer_depth(state)
    except KeyError as exc:
        raise ConversionError(f"{path} ({fmt}): not a ResNet-18/34/50/101/152 backbone: {exc.args[0]}") from exc
    reference = torchvision.models.__dict__[f"resnet{depth}"](weights=None).state_dict()
    # num_batches_tracked is bookkeeping, not a weight: optional (detectron2 files have none)
    reference = {
        k: v for k, v in reference.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
    }
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    report = compare_state(reference, state, str(path), fmt)
    if not report.complete:
        raise ConversionError(
            f"{path} ({fmt}) is not a complete ResNet-{depth} backbone, so nothing was written:\n{report}"
        )
    state = {k: v.detach().to(reference[k].dtype).contiguous() for k, v in state.items()}
    return ResNetWeights(state, depth, str(path), fmt, notes)
