"""``R2ORunner``: mmengine's Runner whose resume reads mmengine checkpoints with ``weights_only=True``.

Configs select it with ``runner_type = "R2ORunner"``; everything else is mmengine's Runner.
"""

from __future__ import annotations

import torch
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from .safe_globals import resume_globals


class R2ORunner(Runner):
    def resume(
        self, filename: str, resume_optimizer: bool = True, resume_param_scheduler: bool = True, map_location="default"
    ) -> None:
        # mmengine's checkpoints pickle HistoryBuffer's statistics methods via getattr: allowed here only.
        with torch.serialization.safe_globals(resume_globals()):
            super().resume(filename, resume_optimizer, resume_param_scheduler, map_location)


def register() -> None:
    existing = RUNNERS.module_dict.get("R2ORunner")
    if existing is None:
        RUNNERS.register_module(name="R2ORunner", module=R2ORunner)
    elif existing.__module__ != R2ORunner.__module__:
        raise KeyError(f"another runner is already registered as R2ORunner in mmseg's RUNNERS: {existing}")
