"""detectron2 ResNet (+FPN) built to match an R2O encoder of any depth (18-152), torchvision layout.

torchvision places the stride-2 of a bottleneck in its 3x3 conv (``STRIDE_IN_1X1: False``) and uses
64 stage-2 channels for the BasicBlock nets; both are derived here so a config only names the depth.
"""

from __future__ import annotations

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from r2o_pretrain.resnet_depths import BASIC_BLOCK_DEPTHS, DEPTHS


def _torchvision_layout(cfg) -> None:
    depth = cfg.MODEL.RESNETS.DEPTH
    if depth not in DEPTHS:
        raise ValueError(f"MODEL.RESNETS.DEPTH must be one of {DEPTHS} for an R2O backbone, got {depth}")
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    if depth in BASIC_BLOCK_DEPTHS:
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
        cfg.MODEL.RESNETS.RES5_DILATION = 1
    if was_frozen:
        cfg.freeze()


@BACKBONE_REGISTRY.register()
def build_r2o_resnet_backbone(cfg, input_shape: ShapeSpec):
    """detectron2's ResNet with torchvision's stride placement and channel widths for the depth."""
    _torchvision_layout(cfg)
    return build_resnet_backbone(cfg, input_shape)


@BACKBONE_REGISTRY.register()
def build_r2o_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """R2O ResNet bottom-up + FPN (P2-P6), as detectron2's ``build_resnet_fpn_backbone``."""
    bottom_up = build_r2o_resnet_backbone(cfg, input_shape)
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
