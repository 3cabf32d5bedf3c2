# MobileMamba-S6 on ImageNet-1K: 300 epochs, 224 px, 8 GPUs x 128 images
# (release top-1 78.0; recipe: docs/architecture.md#training).
# The same file runs on one process or many:
#     python tools/train.py configs/mobilemamba/mobilemamba-s6_8xb128_in1k.py
#     bash tools/dist_train.sh configs/mobilemamba/mobilemamba-s6_8xb128_in1k.py 8
# The lr (3e-3) is for a total batch of 8 x 128 = 1024 and is used as
# written; for another total batch B (processes x batch_size) add
# --auto-scale-lr to scale it to 3e-3 * B / 1024.
_base_ = [
    '../_base_/models/mobilemamba-s6.py',
    '../_base_/datasets/imagenet_bs128_mobilemamba.py',
    '../_base_/schedules/mobilemamba_bs1024_adamw_300e.py',
    '../_base_/default_runtime.py',
]

img_size = 224
crop_bilinear = dict(_base_.crop_bilinear, scale=img_size)
crop_bicubic = dict(_base_.crop_bicubic, scale=img_size)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomChoice', transforms=[[crop_bilinear], [crop_bicubic]]),
    _base_.flip,
    _base_.rand_augment,
    _base_.random_erasing,
    dict(type='PackInputs'),
]
test_resize = dict(
    _base_.test_resize, scale=int(img_size / _base_.test_crop_ratio))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    test_resize,
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
