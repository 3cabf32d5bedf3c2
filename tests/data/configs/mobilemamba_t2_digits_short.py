# A new user's first run: the MobileMamba-T2 ImageNet config unchanged but
# for the data (scikit-learn's handwritten-digit scans at 32 px in
# mmpretrain's ImageNet folder format), the number of classes and a short
# schedule. Its augmentation (RandAugment, Mixup/CutMix, random erasing,
# 0.08-1 crops), AdamW, clipping and EMA are the ImageNet recipe's.
_base_ = ['../../../configs/mobilemamba/mobilemamba-t2_8xb128_in1k.py']

data_root = 'data/digits32'
num_classes = 10
img_size = 32
model = dict(head=dict(num_classes=num_classes))
data_preprocessor = dict(num_classes=num_classes)

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
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(_base_.test_resize, scale=int(img_size / _base_.test_crop_ratio)),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True, pin_memory=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=100, num_workers=0, persistent_workers=False,
    pin_memory=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

# the short schedule: the lr a user picks for batch 32, warm-up 1 epoch,
# then cosine to the end
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-2, by_epoch=True,
         begin=1, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=8, val_interval=8)
default_hooks = dict(logger=dict(interval=10))
randomness = dict(seed=0)
