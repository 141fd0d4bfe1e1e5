"""Reading every supported ResNet checkpoint format and writing torchvision / detectron2 / mmseg ones.

The plugins (r2o_d2, r2o_mmseg) use this package for all weight handling; nothing else maps keys.
"""

from .backbone import load_backbone
from .errors import ConversionError
from .files import read_weights_file
from .formats import ResNetWeights, read_resnet_weights, resnet_weights_from
from .report import LoadReport
from .writers import to_detectron2, to_mmseg, to_torchvision, write_weights

__all__ = [
    "ConversionError",
    "LoadReport",
    "ResNetWeights",
    "load_backbone",
    "read_resnet_weights",
    "read_weights_file",
    "resnet_weights_from",
    "to_detectron2",
    "to_mmseg",
    "to_torchvision",
    "write_weights",
]
