"""A DetectionCheckpointer that also reads every R2O weight format through ``r2o_pretrain.weights``.

Backbone-only files (pretraining checkpoints, torchvision exports, official R2O checkpoints, converted
``.pkl``) are mapped onto the model's ``backbone.bottom_up.*`` and a load report is logged. Full
detectron2 checkpoints (``--resume``, ``--eval-only`` on a trained model) keep detectron2's behaviour.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import warnings

import torch
from detectron2.checkpoint import DetectionCheckpointer

from r2o_pretrain.weights import ConversionError, read_resnet_weights, to_detectron2
from r2o_pretrain.weights.report import LoadReport, compare_state

logger = logging.getLogger("r2o_d2")


def _is_full_detectron2_model(obj) -> bool:
    model = obj.get("model") if isinstance(obj, dict) else None
    return isinstance(model, dict) and any(k.startswith(("roi_heads.", "proposal_generator.")) for k in model)


class R2OCheckpointer(DetectionCheckpointer):
    def __init__(self, model, save_dir: str = "", *, encoder: str = "online", allow_pickle: bool = False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.encoder = encoder
        self.allow_pickle = allow_pickle
        self.last_report: LoadReport | None = None

    def _written_here(self, filename: str) -> bool:
        return bool(self.save_dir) and os.path.abspath(filename).startswith(os.path.abspath(self.save_dir) + os.sep)

    def _load_file(self, filename: str):
        if filename.endswith(".pkl"):
            logger.warning("unpickling %s (detectron2's .pkl format needs it): only load files you trust", filename)
            with open(filename, "rb") as f:
                obj = pickle.load(f, encoding="latin1")
            if _is_full_detectron2_model(obj):
                return super()._load_file(filename)
            return self._map_backbone(filename, allow_pickle=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                obj = torch.load(filename, map_location="cpu", weights_only=True)
        except Exception as exc:
            if not (self.allow_pickle or self._written_here(filename)):
                raise ConversionError(
                    f"MODEL.WEIGHTS {filename} needs full unpickling, which can run code "
                    f"({str(exc).splitlines()[0][:160]}). If you trust it, set MODEL.R2O.ALLOW_PICKLE True."
                ) from exc
            logger.info("reading %s with full unpickling (a detectron2 training checkpoint)", filename)
            obj = torch.load(filename, map_location="cpu", weights_only=False)
            return obj if "model" in obj else {"model": obj}
        if _is_full_detectron2_model(obj):
            return obj
        return self._map_backbone(filename, allow_pickle=self.allow_pickle)

    def _backbone_keys(self) -> tuple[str, dict[str, torch.Tensor]]:
        """(prefix, {key: tensor}) of the model's ResNet trunk: ``backbone.bottom_up.`` under an FPN."""
        state = self.model.state_dict()
        for prefix in ("backbone.bottom_up.", "backbone.", ""):
            trunk = {
                k: v
                for k, v in state.items()
                if re.match(re.escape(prefix) + r"(stem|res[2-5])\.", k) and not k.endswith("num_batches_tracked")
            }
            if trunk:
                return prefix, trunk
        raise ConversionError("the model has no detectron2 ResNet trunk to load R2O weights into")

    def _map_backbone(self, filename: str, allow_pickle: bool):
        try:
            weights = read_resnet_weights(filename, self.encoder, allow_pickle=allow_pickle)
        except ConversionError as exc:
            raise ConversionError(f"MODEL.WEIGHTS: {exc}") from exc
        prefix, trunk = self._backbone_keys()
        model = {prefix + k: torch.from_numpy(v) for k, v in to_detectron2(weights)["model"].items()}
        self.last_report = compare_state(trunk, model, filename, weights.source_format)
        logger.info("%s", self.last_report)
        if not self.last_report.complete:
            raise ConversionError(
                f"MODEL.WEIGHTS {filename} (ResNet-{weights.depth}) does not fit this backbone "
                f"(MODEL.RESNETS.DEPTH?):\n{self.last_report}"
            )
        return {"model": model, "__author__": "r2o", "matching_heuristics": False}
