"""Environment check: detectron2 Mask R-CNN R50-FPN (model-zoo config), 2 CPU iterations on the demo
scenes from random init, then COCOEvaluator (pure-Python path) printing bbox and segm AP."""

import sys

from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.data import build_detection_test_loader
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from detectron2.utils.logger import setup_logger


def main(demo_dir: str, out: str) -> None:
    setup_logger()
    register_coco_instances("smoke_train", {}, f"{demo_dir}/instances_train.json", f"{demo_dir}/images")
    register_coco_instances("smoke_val", {}, f"{demo_dir}/instances_val.json", f"{demo_dir}/images_val")
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"))
    cfg.merge_from_list(
        [
            "MODEL.DEVICE",
            "cpu",
            "MODEL.WEIGHTS",
            "",
            "MODEL.ROI_HEADS.NUM_CLASSES",
            "4",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
            "0.0",
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
            "32",
            "MODEL.RPN.POST_NMS_TOPK_TEST",
            "50",
            "MODEL.RPN.PRE_NMS_TOPK_TEST",
            "100",
            "INPUT.MIN_SIZE_TRAIN",
            "(96,)",
            "INPUT.MAX_SIZE_TRAIN",
            "128",
            "INPUT.MIN_SIZE_TEST",
            "96",
            "INPUT.MAX_SIZE_TEST",
            "128",
            "INPUT.MASK_FORMAT",
            "bitmask",
            "DATASETS.TRAIN",
            "('smoke_train',)",
            "DATASETS.TEST",
            "('smoke_val',)",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "SOLVER.MAX_ITER",
            "2",
            "SOLVER.BASE_LR",
            "0.001",
            "SOLVER.WARMUP_ITERS",
            "0",
            "DATALOADER.NUM_WORKERS",
            "0",
            "OUTPUT_DIR",
            out,
            "TEST.DETECTIONS_PER_IMAGE",
            "20",
            # random init: FrozenBN (identity statistics) lets activations blow up to inf; train real BN instead
            "MODEL.RESNETS.NORM",
            "BN",
            "MODEL.BACKBONE.FREEZE_AT",
            "0",
        ]
    )
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    evaluator = COCOEvaluator("smoke_val", output_dir=out, use_fast_impl=False)
    results = inference_on_dataset(trainer.model, build_detection_test_loader(cfg, "smoke_val"), evaluator)
    print(results)
    assert "bbox" in results and "segm" in results


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
