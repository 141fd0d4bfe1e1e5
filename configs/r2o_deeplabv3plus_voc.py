# DeepLabV3+ on PASCAL VOC 2012 + SBD (VOC-aug) from an R2O backbone: mmseg's own
# `deeplabv3plus_r50-d8_4xb4-20k_voc12aug-512x512` (inherited below, unchanged: dilated ResNet-50 d8 (strides
# 1,2,1,1, dilations 1,1,2,4), DepthwiseSeparableASPPHead 512 channels, dilations 1,12,24,36, low-level c1
# 256 -> 48 channels, dropout 0.1; auxiliary FCN head on layer3 256 channels, 1 conv, weight 0.4;
# RandomResize (2048, 512) x U(0.5, 2), RandomCrop 512 with cat_max_ratio 0.75, flip, PhotoMetricDistortion,
# Pad 512; test (2048, 512) keeping the ratio, whole image; train = train.txt (SegmentationClass) + aug.txt
# (SegmentationClassAug); SGD lr 0.01, momentum 0.9, weight decay 5e-4, poly (power 0.9, eta_min 1e-4), 20k
# iterations, batch 16 = 4 images x 4 GPUs, SyncBN). mmseg's model zoo: 75.93 mIoU with its ImageNet ResNetV1c.
#
# Where ours differs from mmseg's file (nothing else):
#   backbone  R2OResNet (mmseg's ResNet, V1b: torchvision's 7x7 stem) instead of ResNetV1c (three 3x3 stem
#             convs): the R2O backbone is torchvision's ResNet-50. Strides, dilations, contract_dilation,
#             SyncBN, norm_eval False as mmseg's.
#   weights   R2O_CHECKPOINT instead of `pretrained='open-mmlab://resnet50_v1c'`.
#   data root R2O_DATA_ROOT (default mmseg's data/VOCdevkit/VOC2012).
# mmseg's 75.93 is a V1c number: compare with the supervised torchvision ResNet-50 run through THIS file
# (docs/transfer_mmseg.md, "The supervised baseline first").
#
#   R2O_CHECKPOINT=runs/r2o_r50/checkpoints/last.pth mim train mmseg configs/r2o_deeplabv3plus_voc.py \
#       --launcher pytorch --gpus 4
#   (8 GPUs: add --cfg-options train_dataloader.batch_size=2 to keep the batch at 16)
#
# Without editing this file:
#   R2O_CHECKPOINT  the weights (any R2O format or a torchvision state dict; unset or "none": random init, warned)
#   R2O_DATA_ROOT   the VOC2012 folder: JPEGImages/ SegmentationClass/ SegmentationClassAug/
#                   ImageSets/Segmentation/{train,val,aug}.txt (SegmentationClassAug + aug.txt: mmseg's
#                   voc_aug.py converter, see configs/r2o_fcn_voc.py)
_base_ = ["mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-20k_voc12aug-512x512.py"]
custom_imports = dict(imports=["r2o_mmseg"], allow_failed_imports=False)
runner_type = "R2ORunner"  # mmengine Runner; its checkpoints load (test, load_from, resume) under weights_only

checkpoint = "{{$R2O_CHECKPOINT:none}}"  # "none": random init (a warning says so)
data_root = "{{$R2O_DATA_ROOT:data/VOCdevkit/VOC2012}}"
norm_cfg = dict(type="SyncBN", requires_grad=True)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type="R2OResNet",
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style="pytorch",
        contract_dilation=True,
        encoder="online",
        init_cfg=dict(type="Pretrained", checkpoint=checkpoint),
    ),
)
voc = dict(type="PascalVOCDataset", data_root=data_root)
train_dataloader = dict(
    dataset=dict(
        datasets=[  # mmseg's two (a list replaces the base's whole): train.txt + aug.txt, mmseg's train pipeline
            dict(
                **voc,
                data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClass"),
                ann_file="ImageSets/Segmentation/train.txt",
                pipeline={{_base_.train_pipeline}},
            ),
            dict(
                **voc,
                data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClassAug"),
                ann_file="ImageSets/Segmentation/aug.txt",
                pipeline={{_base_.train_pipeline}},
            ),
        ]
    )
)
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
