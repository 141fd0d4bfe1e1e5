"""DefaultTrainer with the R2O checkpointer, the configured mapper and COCO (pure Python) or PASCAL VOC evaluation."""

from __future__ import annotations

import os
import weakref

from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

from .checkpoint import R2OCheckpointer
from .config import R2OConfigError
from .mapper import build_mapper


class EvalCheckpointer(R2OCheckpointer):
    """For ``--eval-only``: a trained model whose heads do not fit the config is an error, not a warning.

    detectron2 skips tensors of the wrong shape with a warning (right when fine-tuning from another
    dataset's model); evaluating such a model would report the AP of randomly initialised heads.
    """

    def __init__(self, model, *args, test_sets: tuple[str, ...] = (), **kwargs):
        super().__init__(model, *args, **kwargs)
        self.test_sets = tuple(test_sets)

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        heads = [(k, tuple(a), tuple(b)) for k, a, b in incompatible.incorrect_shapes if k.startswith("roi_heads.")]
        if heads:
            key, in_file, in_model = heads[0]
            raise R2OConfigError(
                f"MODEL.WEIGHTS does not fit the model's heads ({key}: {in_file} in the file, {in_model} in the "
                f"model; {len(heads)} such tensors). A model trained on other classes cannot be evaluated on "
                f"DATASETS.TEST {self.test_sets}: evaluate it on a test set with the categories "
                "it was trained on."
            )
        return incompatible


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
        if MetadataCatalog.get(dataset_name).get("evaluator_type") == "pascal_voc":
            return PascalVOCDetectionEvaluator(dataset_name)  # AP, AP50, AP75 (VOC07 11-point for year 2007)
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        # use_fast_impl=False: the fast evaluator is C++ and absent from the offline detectron2
        return COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=False)
