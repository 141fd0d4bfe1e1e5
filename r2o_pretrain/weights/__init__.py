"""Reading every supported ResNet checkpoint format and writing torchvision / detectron2 / mmseg ones.

The plugins (r2o_d2, r2o_mmseg) use this package for all weight handling; nothing else maps keys.
"""

from .formats import ConversionError, ResNetWeights, read_resnet_weights
from .report import LoadReport
from .writers import to_detectron2, to_mmseg, to_torchvision, write_weights

__all__ = [
    "ConversionError",
    "LoadReport",
    "ResNetWeights",
    "read_resnet_weights",
    "to_detectron2",
    "to_mmseg",
    "to_torchvision",
    "write_weights",
]
