"""Loading ResNet weights into a plugin's backbone: read any format, match tensor by tensor, log, raise.

Both plugins call ``load_backbone`` (the mmseg backbone with its own state dict, the detectron2
checkpointer with its trunk renamed to torchvision keys) and only adapt the result to their library.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from .errors import ConversionError
from .files import read_weights_file
from .formats import resnet_weights_from
from .report import LoadReport, compare_state

_logger = logging.getLogger(__name__)


def load_backbone(
    path: str | os.PathLike,
    model_state: dict[str, torch.Tensor],
    target: str,
    *,
    encoder: str = "online",
    allow_pickle: bool = False,
    contents: Any = None,
    label: str = "",
    logger: logging.Logger | None = None,
) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """The tensors of ``path`` for a backbone whose state dict (torchvision keys) is ``model_state``.

    ``target`` names the backbone in errors ("R2OResNet(depth=50)"); ``contents`` is the file's object
    when the caller has already read it with ``read_weights_file``; ``label`` prefixes every error
    ("MODEL.WEIGHTS"). The load report goes to ``logger``. Raises ConversionError when the file is
    unreadable, unsafe, not a ResNet, or does not provide exactly ``model_state``'s tensors and shapes
    (``num_batches_tracked`` buffers are optional).
    Returns (state with torchvision keys and ``model_state``'s dtypes, report).
    """
    prefix = f"{label}: " if label else ""
    try:
        obj = read_weights_file(path, allow_pickle) if contents is None else contents
        weights = resnet_weights_from(obj, path, encoder)
    except ConversionError as exc:
        raise ConversionError(f"{prefix}{exc}") from exc
    model_state = {k: v for k, v in model_state.items() if not k.endswith("num_batches_tracked")}
    report = compare_state(model_state, weights.state, str(path), weights.source_format)
    (logger or _logger).info("%s", report)
    if not report.complete:
        raise ConversionError(f"{prefix}{path} (ResNet-{weights.depth}) does not fit {target}:\n{report}")
    return {k: v.to(model_state[k].dtype) for k, v in weights.state.items()}, report
