"""Dataset mappers, selected by ``cfg.INPUT.MAPPER``: detectron2's own, and large-scale jitter (LSJ).

LSJ (the DetCon/R2O COCO protocol): resize so the longest side is ``IMAGE_SIZE × U(MIN_SCALE, MAX_SCALE)``,
flip, then crop/pad to ``IMAGE_SIZE²``. At test time: longest side ``IMAGE_SIZE``.
"""

from __future__ import annotations

from detectron2.data import DatasetMapper
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


@MAPPER_REGISTRY.register()
def default_mapper(cfg, is_train: bool) -> DatasetMapper:
    return DatasetMapper(cfg, is_train)


@MAPPER_REGISTRY.register()
def lsj_mapper(cfg, is_train: bool) -> DatasetMapper:
    return DatasetMapper(
        is_train=is_train,
        augmentations=lsj_augmentations(cfg, is_train),
        image_format=cfg.INPUT.FORMAT,
        use_instance_mask=cfg.MODEL.MASK_ON,
        instance_mask_format=cfg.INPUT.MASK_FORMAT,
        recompute_boxes=is_train and cfg.MODEL.MASK_ON,  # crops cut boxes: rebuild them from the masks
    )


def build_mapper(cfg, is_train: bool) -> DatasetMapper:
    return MAPPER_REGISTRY.get(cfg.INPUT.MAPPER)(cfg, is_train)
