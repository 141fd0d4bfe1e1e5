"""Reading every supported ResNet checkpoint format and writing torchvision / detectron2 / mmseg ones.

The plugins (r2o_d2, r2o_mmseg) use this package for all weight handling; nothing else maps keys.
  files.py          open a torch checkpoint or a plain pickle without running code (``read_weights_file``)
  pickle_reader.py  the restricted unpickler for detectron2 ``.pkl`` (numpy arrays, dicts: nothing else)
  library_globals.py  what mmengine's own checkpoints name (message hub, numpy), allow-listed by name
  formats.py        detect the layout, map it to torchvision keys, check it (``read_resnet_weights``)
  backbone.py       the plugins' one load path: read, match, log the report, raise (``load_backbone``)
  writers.py        write torchvision / detectron2 / mmseg files
"""

from .backbone import load_backbone
from .errors import ConversionError
from .files import read_weights_file
from .formats import ResNetWeights, read_resnet_weights, resnet_weights_from
from .report import LoadReport
from .writers import to_detectron2, to_mmseg, to_torchvision, torchvision_loading, write_weights

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
    "torchvision_loading",
    "write_weights",
]
