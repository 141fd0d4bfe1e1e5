"""Dataset mappers, selected by ``cfg.INPUT.MAPPER``: detectron2's own, and large-scale jitter (LSJ).

LSJ (the DetCon/R2O COCO protocol): resize so the longest side is ``IMAGE_SIZE × U(MIN_SCALE, MAX_SCALE)``,
flip, then crop/pad to ``IMAGE_SIZE²``. At test time: longest side ``IMAGE_SIZE``.
"""

from __future__ import annotations

from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.utils.registry import Registry

MAPPER_REGISTRY = Registry("R2O_MAPPER")
MAPPER_REGISTRY.__doc__ = "Dataset mappers by name (cfg.INPUT.MAPPER); each is called as fn(cfg, is_train)."


def lsj_augmentations(cfg, is_train: bool) -> list[T.Augmentation]:
    size = cfg.INPUT.LSJ.IMAGE_SIZE
    if not is_train:
        return [T.ResizeScale(1.0, 1.0, size, size)]
    return [
        T.ResizeScale(cfg.INPUT.LSJ.MIN_SCALE, cfg.INPUT.LSJ.MAX_SCALE, size, size),
        T.RandomFlip(horizontal=True),
        T.FixedSizeCrop((size, size), pad=True, pad_value=cfg.INPUT.LSJ.PAD_VALUE),
    ]


class LSJDatasetMapper(DatasetMapper):
    """detectron2's DatasetMapper, whose box recomputation (after the crop) also takes an image without
    non-crowd instances (``DATALOADER.FILTER_EMPTY_ANNOTATIONS False``, test-time annotations): empty
    Instances instead of detectron2's "Cannot find field 'gt_masks'"."""

    def _transform_annotations(self, dataset_dict, transforms, image_shape):
        if self.recompute_boxes and all(a.get("iscrowd", 0) for a in dataset_dict["annotations"]):
            dataset_dict.pop("annotations")
            dataset_dict["instances"] = utils.annotations_to_instances([], image_shape)
            return
        super()._transform_annotations(dataset_dict, transforms, image_shape)


@MAPPER_REGISTRY.register()
def default_mapper(cfg, is_train: bool) -> DatasetMapper:
    return DatasetMapper(cfg, is_train)


@MAPPER_REGISTRY.register()
def lsj_mapper(cfg, is_train: bool) -> DatasetMapper:
    return LSJDatasetMapper(
        is_train=is_train,
        augmentations=lsj_augmentations(cfg, is_train),
        image_format=cfg.INPUT.FORMAT,
        use_instance_mask=cfg.MODEL.MASK_ON,
        instance_mask_format=cfg.INPUT.MASK_FORMAT,
        recompute_boxes=is_train and cfg.MODEL.MASK_ON,  # crops cut boxes: rebuild them from the masks
    )


def build_mapper(cfg, is_train: bool) -> DatasetMapper:
    return MAPPER_REGISTRY.get(cfg.INPUT.MAPPER)(cfg, is_train)
