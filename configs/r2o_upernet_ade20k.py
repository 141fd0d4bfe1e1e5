# UperNet on ADE20K from an R2O backbone: mmseg's own `upernet_r50_4xb4-160k_ade20k-512x512` (inherited below,
# unchanged: UPerHead 512 channels, pool scales 1,2,3,6, dropout 0.1; auxiliary FCN head on layer3 256 channels,
# 1 conv, weight 0.4; RandomResize (2048, 512) x U(0.5, 2), RandomCrop 512 with cat_max_ratio 0.75, flip,
# PhotoMetricDistortion; test (2048, 512) keeping the ratio, whole image; labels with reduce_zero_label (0 ->
# ignored, 150 classes); SGD lr 0.01, momentum 0.9, weight decay 5e-4, poly (power 0.9, eta_min 1e-4), 160k
# iterations, batch 16 = 4 images x 4 GPUs, SyncBN). mmseg's model zoo: 42.05 mIoU with its ImageNet ResNetV1c.
#
# Where ours differs from mmseg's file (nothing else):
#   backbone  R2OResNet (mmseg's ResNet, V1b: torchvision's 7x7 stem, stride in the 3x3 conv) instead of
#             ResNetV1c (a deep stem of three 3x3 convs, 32-32-64 channels): the R2O backbone is torchvision's
#             ResNet-50, so its weights fit V1b only. Strides, dilations, SyncBN, norm_eval False as mmseg's.
#   weights   R2O_CHECKPOINT (any format r2o_pretrain.weights reads, a torchvision state dict included) instead
#             of `pretrained='open-mmlab://resnet50_v1c'` (a download, and a V1c network).
#   data root R2O_DATA_ROOT (default mmseg's data/ade/ADEChallengeData2016).
# mmseg's 42.05 is therefore a V1c number: compare with the supervised torchvision ResNet-50 run through THIS
# file (docs/transfer_mmseg.md, "The supervised baseline first"), not with mmseg's table.
#
#   R2O_CHECKPOINT=runs/r2o_r50/checkpoints/last.pth mim train mmseg configs/r2o_upernet_ade20k.py \
#       --launcher pytorch --gpus 4
#   (8 GPUs: add --cfg-options train_dataloader.batch_size=2 to keep the batch at 16)
#
# Without editing this file:
#   R2O_CHECKPOINT  the weights (any R2O format or a torchvision state dict; unset or "none": random init, warned)
#   R2O_DATA_ROOT   the ADEChallengeData2016 folder: images/{training,validation}/*.jpg and
#                   annotations/{training,validation}/*.png (0 = "other", ignored; 1..150 the classes), as the
#                   ADEChallengeData2016.zip of the MIT Scene Parsing benchmark unpacks
_base_ = ["mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py"]
custom_imports = dict(imports=["r2o_mmseg"], allow_failed_imports=False)
runner_type = "R2ORunner"  # mmengine Runner; its checkpoints load (test, load_from, resume) under weights_only

checkpoint = "{{$R2O_CHECKPOINT:none}}"  # "none": random init (a warning says so)
data_root = "{{$R2O_DATA_ROOT:data/ade/ADEChallengeData2016}}"
norm_cfg = dict(type="SyncBN", requires_grad=True)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type="R2OResNet",
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 1, 1),
        strides=(1, 2, 2, 2),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style="pytorch",
        contract_dilation=True,
        encoder="online",
        init_cfg=dict(type="Pretrained", checkpoint=checkpoint),
    ),
)
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
