"""The C4 ROI head of MoCo's detectron2 protocol: detectron2's ``Res5ROIHeads`` plus one norm layer after res5.

MoCo (He et al., CVPR 2020; facebookresearch/moco ``detection/train_net.py``) adds a BN layer after the
res5 stage, normalising the per-region features that the box predictor (and the mask head) read. Its type is ``MODEL.RESNETS.NORM`` (SyncBN-like in the protocol). The pretrained res5 weights go
into ``roi_heads.res5.{0,1,2}`` (``R2OCheckpointer``); the extra norm starts as identity-like (weight 1,
bias 0) and is trained, as in MoCo.
"""

from __future__ import annotations

from detectron2.layers import get_norm
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads

from .config import R2OConfigError


@ROI_HEADS_REGISTRY.register()
class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """``Res5ROIHeads`` whose res5 block ends with ``get_norm(MODEL.RESNETS.NORM)`` (key ``res5.norm``)."""

    @classmethod
    def _build_res5_block(cls, cfg):
        if cfg.MODEL.RESNETS.DEPTH < 50:
            raise R2OConfigError(
                f"ROI_HEADS.NAME {cfg.MODEL.ROI_HEADS.NAME} builds res5 from Bottleneck blocks (ResNet-50 and "
                f"deeper), but MODEL.RESNETS.DEPTH is {cfg.MODEL.RESNETS.DEPTH}: use a C4 config with a ResNet-50+ "
                "backbone, or an FPN config (r2o_d2/configs/*FPN*.yaml) for ResNet-18/34."
            )
        res5, out_channels = super()._build_res5_block(cfg)
        res5.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, out_channels))
        return res5, out_channels
