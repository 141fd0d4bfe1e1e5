"""detectron2 plugin for R2O backbones. Importing it registers the backbone builders, MoCo's C4 ROI head
(``Res5ROIHeadsExtraNorm``) and the mappers.

from r2o_d2 import add_r2o_config, R2OTrainer
"""

from .backbone import build_r2o_resnet_backbone, build_r2o_resnet_fpn_backbone
from .checkpoint import R2OCheckpointer
from .config import R2OConfigError, adapt_norm_to_world_size, add_r2o_config, check_batch_fits_reference_world_size
from .datasets import (
    agreed_classes,
    check_mask_format,
    dataset_classes,
    register_coco_dataset,
    register_demo_datasets,
    register_voc_dataset,
)
from .mapper import MAPPER_REGISTRY, build_mapper
from .roi_heads import Res5ROIHeadsExtraNorm
from .trainer import R2OTrainer

__all__ = [
    "MAPPER_REGISTRY",
    "R2OCheckpointer",
    "R2OConfigError",
    "R2OTrainer",
    "Res5ROIHeadsExtraNorm",
    "adapt_norm_to_world_size",
    "add_r2o_config",
    "agreed_classes",
    "build_mapper",
    "build_r2o_resnet_backbone",
    "build_r2o_resnet_fpn_backbone",
    "check_batch_fits_reference_world_size",
    "check_mask_format",
    "dataset_classes",
    "register_coco_dataset",
    "register_demo_datasets",
    "register_voc_dataset",
]
