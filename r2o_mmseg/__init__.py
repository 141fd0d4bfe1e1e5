"""mmsegmentation plugin: registers ``R2OResNet`` (MODELS), ``R2ORunner`` (RUNNERS), ``RandomRatioResize`` and
``TorchvisionRandomResizedCrop`` (TRANSFORMS) in mmseg's registries.

Configs load it with ``custom_imports = dict(imports=["r2o_mmseg"], allow_failed_imports=False)``.
"""

from . import backbone, runner, transforms
from .backbone import R2OResNet
from .runner import R2ORunner
from .safe_globals import allow_mmengine_checkpoints
from .transforms import RandomRatioResize, TorchvisionRandomResizedCrop

backbone.register()
runner.register()
transforms.register()
allow_mmengine_checkpoints()

__all__ = ["R2OResNet", "R2ORunner", "RandomRatioResize", "TorchvisionRandomResizedCrop"]
