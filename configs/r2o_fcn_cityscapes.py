# FCN on Cityscapes from an R2O backbone — the authors' evaluation config (their
# eval/cityscapes/config_cityscapes.py, mmseg 0.x: the `data.train.pipeline` that ran, not its unused
# `train_pipeline` variable) in mmseg 1.x; docs/method.md lists what is kept different:
# the VOC backbone; FCN head (256 channels, 2 convs, dilation 6, no concat, dropout 0.1, align_corners),
# no auxiliary head; train: (2049, 1025) x U(0.5, 2) keeping the ratio, RandomCrop 769 with cat_max_ratio
# 0.99, flip 0.5, no photometric distortion, pad to 769 (label 255); test: (2049, 1025) keeping the ratio,
# whole image; SGD lr 0.04, momentum 0.9, weight decay 1e-4, 160 epochs, steps at epochs 112 / 144,
# batch 16 (the authors: 4 images x 4 GPUs; here 2 x 8 GPUs, the same batch for SyncBN), SyncBN. Published: R2O 300ep 76.6 mIoU.
#
#   R2O_CHECKPOINT=runs/r2o_r50/checkpoints/last.pth mim train mmseg configs/r2o_fcn_cityscapes.py \
#       --launcher pytorch --gpus 8
#   (4 GPUs, as the authors: add --cfg-options train_dataloader.batch_size=4 to keep the batch at 16)
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
    decode_head=dict(
        in_channels=2048,
        in_index=3,
        channels=256,
        num_convs=2,
        dilation=6,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=True,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
    ),
    auxiliary_head=None,
    test_cfg=dict(_delete_=True, mode="whole"),
)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomResize", scale=(2049, 1025), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.99),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackSegInputs"),  # padding to crop_size (image 0 after normalisation, label 255): data_preprocessor
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(2049, 1025), keep_ratio=True),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
cityscapes = dict(type="CityscapesDataset", data_root=data_root)
train_dataloader = dict(
    batch_size=2,  # per GPU, x 8 GPUs = 16 (the authors: 4 images x 4 GPUs)
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
