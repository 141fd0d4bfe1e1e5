# FCN on the real-photo object scenes (tools/make_objects_data.py OUT), sized for a CPU:
#   R2O_CHECKPOINT=runs/r2o/checkpoints/last.pth R2O_DATA_ROOT=/work/data_objects \
#       mim train mmseg configs/r2o_fcn_objects.py --work-dir runs/fcn_objects
# ResNet-18 (the benchmark's depth), 14 classes (background + the 13 object categories of
# r2o_pretrain.scenes.objects.CLASSES, same order), crop 128, 1000 iterations; OUT laid out as
#   {train,val}/JPEGImages/*.jpg  {train,val}/SegmentationClass/*.png (255 = border, ignored)
#   {train,val}/ImageSets/Segmentation/{train,val}.txt
_base_ = ["./r2o_fcn_voc.py"]

data_root = "{{$R2O_DATA_ROOT:/work/data_objects}}"
crop_size = (128, 128)
num_classes = 14
norm_cfg = dict(type="SyncBN", requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(depth=18),
    decode_head=dict(in_channels=512, channels=128, num_classes=num_classes),
    auxiliary_head=dict(in_channels=256, channels=64, num_classes=num_classes),
)
metainfo = dict(
    classes=(
        "background",
        "sea_animal",
        "small_animal",
        "mammal",
        "fruit",
        "vegetable",
        "plant",
        "vehicle",
        "tool",
        "household",
        "instrument_hobby",
        "sports",
        "space",
        "festive",
    ),
    palette=[
        [0, 0, 0],
        [37, 91, 153],
        [74, 182, 50],
        [111, 17, 203],
        [148, 108, 100],
        [185, 199, 253],
        [222, 34, 150],
        [3, 125, 47],
        [40, 216, 200],
        [77, 51, 97],
        [114, 142, 250],
        [151, 233, 147],
        [188, 68, 44],
        [225, 159, 197],
    ],
)
objects = dict(type="BaseSegDataset", data_root=data_root, metainfo=metainfo, img_suffix=".jpg", seg_map_suffix=".png")
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomResize", scale=(320, 160), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackSegInputs"),
]
test_pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"), dict(type="PackSegInputs")]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        **objects,
        data_prefix=dict(img_path="train/JPEGImages", seg_map_path="train/SegmentationClass"),
        ann_file="train/ImageSets/Segmentation/train.txt",
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    num_workers=2,
    dataset=dict(
        _delete_=True,
        **objects,
        data_prefix=dict(img_path="val/JPEGImages", seg_map_path="val/SegmentationClass"),
        ann_file="val/ImageSets/Segmentation/val.txt",
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
param_scheduler = [dict(type="PolyLR", eta_min=1e-4, power=0.9, begin=0, end=1000, by_epoch=False)]
train_cfg = dict(max_iters=1000, val_interval=1000)
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=1000))
