# FCN on Cityscapes from an R2O backbone — the R2O protocol (docs/method.md): the VOC FCN without the
# auxiliary head, crop 769, 160 epochs, SGD lr 0.04 (weight decay 1e-4), steps at epochs 112 / 144,
# batch 16 (8 GPUs x 2), align_corners, SyncBN. Published: R2O 300ep 76.6 mIoU.
#
#   R2O_CHECKPOINT=runs/r2o_r50/checkpoints/last.pth mim train mmseg configs/r2o_fcn_cityscapes.py \
#       --launcher pytorch --gpus 8
#
# Without editing this file:
#   R2O_CHECKPOINT  the weights (any R2O format; unset or "none": random init, with a warning)
#   R2O_DATA_ROOT   the Cityscapes folder (default data/cityscapes): leftImg8bit/{train,val}/CITY/*_leftImg8bit.png
#                   and gtFine/{train,val}/CITY/*_gtFine_labelTrainIds.png. Make the labelTrainIds files
#                   from the polygons with cityscapesscripts:
#                     CITYSCAPES_DATASET=data/cityscapes python -m cityscapesscripts.preparation.createTrainIdLabelImgs
# Anything else: --cfg-options. (Lists such as param_scheduler replace the base list whole.)
_base_ = ["./r2o_fcn_voc.py"]

data_root = "{{$R2O_DATA_ROOT:data/cityscapes}}"
crop_size = (769, 769)
num_classes = 19
norm_cfg = dict(type="SyncBN", requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=num_classes, align_corners=True),
    auxiliary_head=None,
    test_cfg=dict(mode="slide", crop_size=crop_size, stride=(513, 513)),
)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomResize", scale=(2049, 1025), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(2049, 1025), keep_ratio=True),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
cityscapes = dict(type="CityscapesDataset", data_root=data_root)
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        _delete_=True,
        **cityscapes,
        data_prefix=dict(img_path="leftImg8bit/train", seg_map_path="gtFine/train"),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        **cityscapes,
        data_prefix=dict(img_path="leftImg8bit/val", seg_map_path="gtFine/val"),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=0.04))
param_scheduler = [dict(type="MultiStepLR", by_epoch=True, begin=0, end=160, milestones=[112, 144], gamma=0.1)]
train_cfg = dict(_delete_=True, type="EpochBasedTrainLoop", max_epochs=160, val_interval=16)
default_hooks = dict(
    logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=True),
    checkpoint=dict(type="CheckpointHook", by_epoch=True, interval=16, max_keep_ckpts=2),
)
