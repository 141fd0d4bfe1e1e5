# Dense linear probe on PASCAL VOC 2012 + SBD (VOC-aug) from an R2O backbone: the backbone frozen (every stage,
# BatchNorm in eval mode: its running statistics stay those of the checkpoint), one 1x1 convolution on c5
# (2048 -> 21 channels) trained. It measures what the pretrained features alone separate, with no decoder to
# learn around them.
#
# Source: Leopart (Ziegler & Asano, CVPR 2022), github.com/MkuuWaUjinga/leopart, the ResNet-50 rows of their
# linear probe: experiments/linear_probing/linear_finetune.py with configs/pascal/densecl.yml (the self-supervised
# ResNet-50, DenseCL; their supervised ResNet-50, configs/pascal/supres.yml, used lr 0.01 and 30 epochs):
#   backbone  torchvision ResNet-50 with layer4 dilated (ResnetDilated, output stride 16: stride 1 and dilation
#             1 in layer4's first block, dilation 2 after), in eval mode, no gradient
#   head      nn.Conv2d(2048, 21, 1) on c5, cross-entropy ignoring 255
#   train     trainaug (10582 images: VOC train + SBD minus VOC val), RandomResizedCrop 448 with scale
#             (0.8, 1) and torchvision's ratio (3/4, 4/3), flip 0.5, ImageNet mean/std; batch_size 60 per
#             process with `gpus: 2` (Lightning DDP: 120 per step), drop_last
#   optim     SGD lr 0.1, momentum 0.9, weight decay 1e-4, 25 epochs, lr x 0.1 at epoch 20 (StepLR step 20)
#   test      the image resized to 448x448
# Here: R2OResNet with strides 1,2,2,1, dilations 1,1,1,2, contract_dilation (the same network), frozen_stages 4
# + norm_eval; mmseg's FCNHead with num_convs 0, no dropout (= conv_seg, one 1x1 conv); TorchvisionRandomResizedCrop
# (r2o_mmseg: torchvision's own crop parameters, PIL resize); 15 images x 8 GPUs = 120; the same optimiser and
# epochs. What differs, and could move the number (docs/transfer_mmseg.md lists it too):
#   - loss resolution: theirs on 100x100 (features upsampled to 100x100 bilinearly, labels nearest-downsampled);
#     mmseg's on the 448 crop (logits upsampled bilinearly). The 1x1 conv commutes with the bilinear upsampling,
#     so only the label resolution differs.
#   - evaluation: mmseg's mIoU at each image's original size (the 448x448 prediction resized back); theirs on
#     448x448-resized labels (eval_linear.py, mask_eval_size 448). They also kept the best of their periodic
#     validations (ModelCheckpoint on miou_val); report the last epoch here.
#   - head initialisation: mmseg's conv_seg normal(0, 0.01), bias 0; theirs torch's default Conv2d init.
# The batch of 120 follows from Lightning's per-process batch_size; we could not check how many GPUs their
# published rows used. VICRegL (github.com/facebookresearch/VICRegL, segmentation/configs/
# linear_r50_512x512_40k_voc12aug.py) probes differently: output stride 8, a BatchNorm before the 1x1 conv,
# mmseg's 512x512 VOC-aug pipeline and 40k schedule; its numbers are not comparable with this file's.
#
#   R2O_CHECKPOINT=runs/r2o_r50/checkpoints/last.pth mim train mmseg configs/r2o_linear_voc.py \
#       --launcher pytorch --gpus 8
#   (2 GPUs, as Leopart: add --cfg-options train_dataloader.batch_size=60)
#
# Without editing this file:
#   R2O_CHECKPOINT  the weights (any R2O format or a torchvision state dict; unset or "none": random init, warned)
#   R2O_DATA_ROOT   the VOC2012 folder, as configs/r2o_fcn_voc.py: JPEGImages/ SegmentationClass/
#                   SegmentationClassAug/ ImageSets/Segmentation/{train,val,aug}.txt
_base_ = ["mmseg::_base_/default_runtime.py"]
custom_imports = dict(imports=["r2o_mmseg"], allow_failed_imports=False)
runner_type = "R2ORunner"  # mmengine Runner; its checkpoints load (test, load_from, resume) under weights_only

checkpoint = "{{$R2O_CHECKPOINT:none}}"  # "none": random init (a warning says so)
data_root = "{{$R2O_DATA_ROOT:data/VOCdevkit/VOC2012}}"
crop_size = (448, 448)
num_classes = 21

data_preprocessor = dict(
    type="SegDataPreProcessor",
    mean=[123.675, 116.28, 103.53],  # ImageNet's, in RGB (Leopart's Normalize x 255)
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size,
)
model = dict(
    type="EncoderDecoder",
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type="R2OResNet",
        depth=50,
        num_stages=4,
        out_indices=(3,),
        strides=(1, 2, 2, 1),
        dilations=(1, 1, 1, 2),
        style="pytorch",
        contract_dilation=True,
        frozen_stages=4,  # the stem and all four stages: requires_grad False, eval mode
        norm_cfg=dict(type="BN", requires_grad=False),
        norm_eval=True,  # BatchNorm uses (and keeps) the checkpoint's running statistics
        encoder="online",
        init_cfg=dict(type="Pretrained", checkpoint=checkpoint),
    ),
    decode_head=dict(
        type="FCNHead",
        in_channels=2048,
        in_index=0,  # c5, the only output
        channels=2048,
        num_convs=0,  # no conv before the classifier: the head is conv_seg alone, one 1x1 conv 2048 -> 21
        concat_input=False,
        dropout_ratio=0.0,
        num_classes=num_classes,
        norm_cfg=None,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode="whole"),
)

train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="TorchvisionRandomResizedCrop", size=crop_size, scale=(0.8, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0)),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=crop_size, keep_ratio=False),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
voc = dict(type="PascalVOCDataset", data_root=data_root)
train_dataloader = dict(
    batch_size=15,  # per GPU, x 8 GPUs = 120 (Leopart: 60 per process x 2)
    num_workers=4,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type="ConcatDataset",
        datasets=[  # train.txt + aug.txt = the 10582 images of trainaug (mmseg's voc_aug.py writes both lists)
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

optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=1e-4))
param_scheduler = [dict(type="MultiStepLR", by_epoch=True, begin=0, end=25, milestones=[20], gamma=0.1)]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=25, val_interval=5)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_hooks = dict(
    logger=dict(type="LoggerHook", interval=20, log_metric_by_epoch=True),
    checkpoint=dict(type="CheckpointHook", by_epoch=True, interval=5, max_keep_ckpts=2),
)
log_processor = dict(by_epoch=True)
# batch 120 = 15 images x 8 GPUs; with another number of GPUs mmengine rescales the lr when asked to:
auto_scale_lr = dict(enable=False, base_batch_size=120)
