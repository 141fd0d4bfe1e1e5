"""mmsegmentation plugin: registers ``R2OResNet`` (MODELS) and ``R2ORunner`` (RUNNERS) in mmseg's registries.

Configs load it with ``custom_imports = dict(imports=["r2o_mmseg"], allow_failed_imports=False)``.
"""

from . import backbone, runner
from .backbone import R2OResNet
from .runner import R2ORunner
from .safe_globals import allow_mmengine_checkpoints

backbone.register()
runner.register()
allow_mmengine_checkpoints()

__all__ = ["R2OResNet", "R2ORunner"]
