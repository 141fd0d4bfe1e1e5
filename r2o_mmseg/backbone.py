"""``R2OResNet``: mmseg's ResNet (V1b, style pytorch) whose ``init_cfg`` reads every R2O weight format.

    backbone=dict(type="R2OResNet", depth=50, ..., init_cfg=dict(type="Pretrained", checkpoint=PATH))

PATH may be a raw pretraining checkpoint, a torchvision export, an official R2O checkpoint, an
mmengine/mmseg checkpoint or a detectron2 ``.pkl`` of torchvision layout; ``r2o_pretrain.weights``
reads it (weights only, never code) and a load report is logged.
An empty PATH or "none" means random initialisation (logged as a warning).
"""

from __future__ import annotations

import copy

from mmengine.logging import MMLogger
from mmseg.models.backbones import ResNet
from mmseg.registry import MODELS

from r2o_pretrain.weights import LoadReport, load_backbone

# mmseg ResNet's own default initialisation, used when no checkpoint is given
_RANDOM_INIT = [
    dict(type="Kaiming", layer="Conv2d"),
    dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"]),
]


class R2OResNet(ResNet):
    def __init__(self, *args, encoder: str = "online", allow_pickle: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.encoder = encoder
        self.allow_pickle = allow_pickle
        self.load_report: LoadReport | None = None

    def _split_init_cfg(self) -> tuple[str | None, list[dict]]:
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg] if self.init_cfg else []
        pretrained = [c for c in cfgs if c.get("type") == "Pretrained"]
        others = [c for c in cfgs if c.get("type") != "Pretrained"]
        return (pretrained[0].get("checkpoint") if pretrained else None), others

    def init_weights(self) -> None:
        logger = MMLogger.get_current_instance()
        checkpoint, others = self._split_init_cfg()
        if checkpoint is None:
            return super().init_weights()
        if str(checkpoint).strip().lower() in ("", "none"):
            checkpoint = ""
        original = copy.deepcopy(self.init_cfg)
        self.init_cfg = others or (None if checkpoint else _RANDOM_INIT)
        try:
            super().init_weights()
        finally:
            self.init_cfg = original
        if not checkpoint:
            logger.warning("R2OResNet: no checkpoint given (R2O_CHECKPOINT unset or 'none'): random initialisation")
            return
        state, self.load_report = load_backbone(
            str(checkpoint),
            self.state_dict(),
            f"R2OResNet(depth={self.depth})",
            encoder=self.encoder,
            allow_pickle=self.allow_pickle,
            label="R2OResNet init_cfg checkpoint",
            logger=logger,
        )
        self.load_state_dict(state, strict=False)
        self._is_init = True


def register() -> None:
    """Register R2OResNet in mmseg's MODELS once; importing this package twice is harmless."""
    existing = MODELS.module_dict.get("R2OResNet")
    if existing is None:
        MODELS.register_module(name="R2OResNet", module=R2OResNet)
    elif existing.__qualname__ != R2OResNet.__qualname__ or existing.__module__ != R2OResNet.__module__:
        raise KeyError(f"another module is already registered as R2OResNet in mmseg's MODELS: {existing}")
