"""A DetectionCheckpointer that reads every file without running code from it, and every R2O format.

Every file goes through ``r2o_pretrain.weights.read_weights_file``: torch files with
``weights_only=True`` (plus ``DETECTRON2_CHECKPOINT_GLOBALS``, what detectron2's own training
checkpoints name), detectron2 ``.pkl`` with the restricted unpickler. Full detectron2 models
(``--resume``, ``--eval-only``, model-zoo detectors) are then handed to detectron2 unchanged;
backbone-only files (pretraining checkpoints, torchvision exports, official R2O checkpoints, converted
or torchvision-layout ``.pkl``) go through ``load_backbone`` onto ``backbone.bottom_up.*`` (FPN) or
``backbone.*`` + ``roi_heads.res5.*`` (C4, where res5 is in the ROI head) with a load report. Full
unpickling happens only with ``MODEL.R2O.ALLOW_PICKLE True``.
"""

from __future__ import annotations

import logging
import re

from detectron2.checkpoint import DetectionCheckpointer

from r2o_pretrain.weights import ConversionError, LoadReport, load_backbone, read_weights_file
from r2o_pretrain.weights.resnet_keys import detectron2_to_torchvision, infer_depth, torchvision_to_detectron2

logger = logging.getLogger("r2o_d2")

# What a checkpoint written by detectron2's (Detection)Checkpointer names beyond torch's own weights-only
# globals. detectron2 0.6's DefaultTrainer saves {"model", "iteration", "trainer": {"iteration", "hooks":
# {"LRScheduler": {"base_lrs", "last_epoch"}}}}; newer detectron2 adds "_trainer": {"optimizer",
# "grad_scaler"}, and checkpointables given directly save optimizer / scheduler / grad-scaler state dicts:
# tensors, numbers and containers only, so nothing (checked on a real run's checkpoint and on such a state
# in tests/test_weights_security.py). A detectron2 that saves more is refused with the global named.
DETECTRON2_CHECKPOINT_GLOBALS: tuple = ()


def _is_full_detectron2_model(obj) -> bool:
    model = obj.get("model") if isinstance(obj, dict) else None
    return isinstance(model, dict) and any(k.startswith(("roi_heads.", "proposal_generator.")) for k in model)


class R2OCheckpointer(DetectionCheckpointer):
    def __init__(self, model, save_dir: str = "", *, encoder: str = "online", allow_pickle: bool = False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.encoder = encoder
        self.allow_pickle = allow_pickle
        self.last_report: LoadReport | None = None

    def _load_file(self, filename: str):
        obj = read_weights_file(filename, self.allow_pickle, DETECTRON2_CHECKPOINT_GLOBALS)
        if _is_full_detectron2_model(obj):
            return obj  # detectron2's own layout: a training checkpoint or a model-zoo detector
        keys = self._backbone_keys()
        model_state = self.model.state_dict()
        trunk = {detectron2_to_torchvision(k): model_state[m] for k, m in keys.items()}
        state, self.last_report = load_backbone(
            filename,
            trunk,
            f"this model's ResNet-{infer_depth(trunk)} backbone (MODEL.RESNETS.DEPTH)",
            encoder=self.encoder,
            contents=obj,
            label="MODEL.WEIGHTS",
            logger=logger,
        )
        model = {keys[torchvision_to_detectron2(k)]: v for k, v in state.items()}
        return {"model": model, "__author__": "r2o", "matching_heuristics": False}

    def _backbone_keys(self) -> dict[str, str]:
        """{ResNet key in detectron2's names (``stem.*``, ``res2.*`` … ``res5.*``): the model's key}.

        The trunk is ``backbone.bottom_up.`` under an FPN and ``backbone.`` in a C4 model, whose res5 lives in
        the ROI head (``roi_heads.res5.N.*``: detectron2's ``Res5ROIHeads``); a norm after res5 (MoCo's
        ``roi_heads.res5.norm``) is not part of a ResNet and is left to the model's own initialisation.
        """
        state = self.model.state_dict()
        for prefix in ("backbone.bottom_up.", "backbone.", ""):
            pattern = re.compile(re.escape(prefix) + r"(stem|res[2-5])\.")
            keys = {k[len(prefix) :]: k for k in state if pattern.match(k)}
            if keys:
                break
        else:
            raise ConversionError("the model has no detectron2 ResNet trunk to load R2O weights into")
        if not any(k.startswith("res5.") for k in keys):
            head = re.compile(r"roi_heads\.(res5\.\d+\..+)$")
            keys.update({m.group(1): k for k in state if (m := head.match(k))})
        return keys
