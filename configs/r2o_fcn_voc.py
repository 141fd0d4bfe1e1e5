# FCN on PASCAL VOC 2012 (+aug) from an R2O backbone — the authors' evaluation config (their
# eval/pascal/config_pascal.py, mmseg 0.x) in mmseg 1.x; docs/method.md lists what is kept different:
# dilated ResNet-50 (V1b, style pytorch, strides 1,2,2,1, dilations 1,1,1,2, contract dilation), SyncBN;
# FCN head (256 channels, 2 convs, dilation 6, concat input, dropout 0.1); auxiliary FCN head on layer3
# (256 channels, 2 convs, dilation 6, no concat, dropout 0.1, weight 0.2);
# train: the original image x U(0.5, 2) (RandomRatioResize, registered by r2o_mmseg), RandomCrop 513 with
# cat_max_ratio 0.99, flip 0.5, no photometric distortion, pad to 513 (label 255; done by the
# data_preprocessor after normalisation, as their Pad after Normalize); test: the original size, whole image;
# SGD lr 0.01, momentum 0.9, weight decay 1e-4, 30k iterations, steps at 21k / 27k, batch 16 (the authors:
# 8 images x 2 GPUs; here 2 x 8 GPUs, the same batch for SyncBN).
# Published: R2O 300ep 77.3 mIoU.
#
#   R2O_CHECKPOINT=runs/r2o_r50/checkpoints/last.pth mim train mmseg configs/r2o_fcn_voc.py \
#       --launcher pytorch --gpus 8
#   (2 GPUs, as the authors: add --cfg-options train_dataloader.batch_size=8 to keep the batch at 16)
#
# Without editing this file:
#   R2O_CHECKPOINT  the weights: an R2O pretraining checkpoint, torchvision export, official R2O file or
#                   converted mmseg file (unset or "none": random init, with a warning)
#   R2O_DATA_ROOT   the VOC2012 folder (default data/VOCdevkit/VOC2012), laid out as
#                     JPEGImages/  SegmentationClass/  SegmentationClassAug/
#                     ImageSets/Segmentation/{train,val,aug}.txt
#                   SegmentationClassAug + aug.txt come from the SBD set with mmseg's converter:
#                     python $(python -c "import mmseg,os;print(os.path.dirname(mmseg.__file__))")/.mim/tools/dataset_converters/voc_aug.py \
#                       data/VOCdevkit data/VOCdevkit/VOCaug --nproc 8
# Anything else: --cfg-options, e.g. --cfg-options train_dataloader.batch_size=4
_base_ = [
    "mmseg::_base_/models/fcn_r50-d8.py",
    "mmseg::_base_/default_runtime.py",
]
custom_imports = dict(imports=["r2o_mmseg"], allow_failed_imports=False)
runner_type = "R2ORunner"  # mmengine Runner; its checkpoints load (test, load_from, resume) under weights_only

checkpoint = "{{$R2O_CHECKPOINT:none}}"  # "none": random init (a warning says so)
data_root = "{{$R2O_DATA_ROOT:data/VOCdevkit/VOC2012}}"
crop_size = (513, 513)
num_classes = 21
norm_cfg = dict(type="SyncBN", requires_grad=True)

data_preprocessor = dict(size=crop_size, pad_val=0, seg_pad_val=255)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type="R2OResNet",
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        strides=(1, 2, 2, 1),
        dilations=(1, 1, 1, 2),
        style="pytorch",
        contract_dilation=True,
        norm_cfg=norm_cfg,
        norm_eval=False,
        encoder="online",
        init_cfg=dict(type="Pretrained", checkpoint=checkpoint),
    ),
    decode_head=dict(
        in_channels=2048,
        in_index=3,
        channels=256,
        num_convs=2,
        dilation=6,
        concat_input=True,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
    ),
    auxiliary_head=dict(
        in_channels=1024,
        in_index=2,
        channels=256,
        num_convs=2,
        dilation=6,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=0.2),
    ),
    test_cfg=dict(mode="whole"),
)

train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomRatioResize", ratio_range=(0.5, 2.0)),  # the original size x U(0.5, 2)
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.99),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackSegInputs"),  # padding to crop_size (image 0 after normalisation, label 255): data_preprocessor
]
test_pipeline = [  # the original size
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
voc = dict(type="PascalVOCDataset", data_root=data_root)
train_dataloader = dict(
    batch_size=2,  # per GPU, x 8 GPUs = 16 (the authors: 8 images x 2 GPUs)
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        type="ConcatDataset",
        datasets=[
            dict(
                **voc,
                data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClass"),
                ann_file="ImageSets/Segmentation/train.txt",
                pipeline=train_pipeline,
            ),
            dict(
                **voc,
                data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClassAug"),
                ann_file="ImageSets/Segmentation/aug.txt",
                pipeline=train_pipeline,
            ),
        ],
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        **voc,
        data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClass"),
        ann_file="ImageSets/Segmentation/val.txt",
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
test_evaluator = val_evaluator

optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4))
param_scheduler = [dict(type="MultiStepLR", by_epoch=False, begin=0, end=30000, milestones=[21000, 27000], gamma=0.1)]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=30000, val_interval=3000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_hooks = dict(
    logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=3000, max_keep_ckpts=2),
)
# batch 16 = 2 images x 8 GPUs; with another number of GPUs mmengine rescales the lr when asked to:
auto_scale_lr = dict(enable=False, base_batch_size=16)
