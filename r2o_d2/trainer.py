"""DefaultTrainer with the R2O checkpointer, the configured mapper and COCO evaluation (pure Python)."""

from __future__ import annotations

import os
import weakref

from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator

from .checkpoint import R2OCheckpointer
from .mapper import build_mapper


class R2OTrainer(DefaultTrainer):
    def build_hooks(self):
        # DefaultTrainer.__init__ creates a DetectionCheckpointer just before it calls build_hooks;
        # replace it with ours (same save dir and checkpointables) before the hooks capture it.
        self.checkpointer = R2OCheckpointer(
            self._trainer.model,
            self.cfg.OUTPUT_DIR,
            encoder=self.cfg.MODEL.R2O.ENCODER,
            allow_pickle=self.cfg.MODEL.R2O.ALLOW_PICKLE,
            trainer=weakref.proxy(self),
        )
        return super().build_hooks()

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=build_mapper(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(cfg, dataset_name, mapper=build_mapper(cfg, False))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        # use_fast_impl=False: the fast evaluator is C++ and absent from the offline detectron2
        return COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=False)
