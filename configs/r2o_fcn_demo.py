# The VOC FCN on the demo scenes' VOC-style export (tools/make_demo_data.py → data/demo/voc), sized for a CPU:
#   R2O_CHECKPOINT=runs/demo/checkpoints/last.pth mim train mmseg configs/r2o_fcn_demo.py --work-dir runs/fcn_demo
# ResNet-18 (the demo pretraining's depth), 5 classes (background + 4 shapes), crop 128, 200 iterations.
_base_ = ["./r2o_fcn_voc.py"]

data_root = "{{$R2O_DATA_ROOT:data/demo/voc}}"
crop_size = (128, 128)
num_classes = 5
norm_cfg = dict(type="SyncBN", requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(depth=18),
    decode_head=dict(in_channels=512, channels=128, num_classes=num_classes),
    auxiliary_head=dict(in_channels=256, channels=64, num_classes=num_classes),
)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomResize", scale=(256, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackSegInputs"),
]
test_pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"), dict(type="PackSegInputs")]
voc = dict(type="PascalVOCDataset", data_root=data_root)
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        **voc,
        data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClass"),
        ann_file="ImageSets/Segmentation/train.txt",
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(num_workers=2, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
param_scheduler = [dict(type="PolyLR", eta_min=1e-4, power=0.9, begin=0, end=200, by_epoch=False)]
train_cfg = dict(max_iters=200, val_interval=100)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=100))
