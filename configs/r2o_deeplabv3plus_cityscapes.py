# DeepLabV3+ on Cityscapes from an R2O backbone: mmseg's own `deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024`
# (inherited below, unchanged: the d8 backbone and the heads of configs/r2o_deeplabv3plus_voc.py with 19
# classes; RandomResize (2048, 1024) x U(0.5, 2), RandomCrop 512x1024 with cat_max_ratio 0.75, flip,
# PhotoMetricDistortion; test (2048, 1024) keeping the ratio, whole image; SGD lr 0.01, momentum 0.9, weight
# decay 5e-4, poly (power 0.9, eta_min 1e-4), 80k iterations, batch 8 = 2 images x 4 GPUs, SyncBN).
# mmseg's model zoo: 80.09 mIoU with its ImageNet ResNetV1c.
#
# Where ours differs from mmseg's file (nothing else): R2OResNet (V1b, torchvision's stem) instead of
# ResNetV1c (deep stem), R2O_CHECKPOINT instead of `pretrained='open-mmlab://resnet50_v1c'`, R2O_DATA_ROOT
# (default mmseg's data/cityscapes/). mmseg's 80.09 is a V1c number: compare with the supervised torchvision
# ResNet-50 run through THIS file (docs/transfer_mmseg.md, "The supervised baseline first").
#
#   R2O_CHECKPOINT=runs/r2o_r50/checkpoints/last.pth mim train mmseg configs/r2o_deeplabv3plus_cityscapes.py \
#       --launcher pytorch --gpus 4
#   (8 GPUs: add --cfg-options train_dataloader.batch_size=1 to keep the batch at 8)
#
# Without editing this file:
#   R2O_CHECKPOINT  the weights (any R2O format or a torchvision state dict; unset or "none": random init, warned)
#   R2O_DATA_ROOT   the Cityscapes folder: leftImg8bit/{train,val}/CITY/*_leftImg8bit.png and
#                   gtFine/{train,val}/CITY/*_gtFine_labelTrainIds.png (made with cityscapesscripts'
#                   createTrainIdLabelImgs, see configs/r2o_fcn_cityscapes.py)
_base_ = ["mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py"]
custom_imports = dict(imports=["r2o_mmseg"], allow_failed_imports=False)
runner_type = "R2ORunner"  # mmengine Runner; its checkpoints load (test, load_from, resume) under weights_only

checkpoint = "{{$R2O_CHECKPOINT:none}}"  # "none": random init (a warning says so)
data_root = "{{$R2O_DATA_ROOT:data/cityscapes/}}"
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
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
