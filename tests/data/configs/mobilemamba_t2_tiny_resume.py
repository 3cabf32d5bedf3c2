# The MobileMamba-T2 ImageNet config (model, augmentation, AdamW schedule,
# warm-up EMA, clipping, crash-safe checkpoints) on a tiny 10-class folder of
# 32 px images, 5 iterations an epoch, for the kill-and-resume tests. A
# KillHook (tests/data/kill_hook.py) is in place, idle unless
# custom_hooks.1.after_iter or custom_hooks.1.during_save_at_iter is set.
_base_ = ['../../../configs/mobilemamba/mobilemamba-t2_8xb128_in1k.py']
custom_imports = dict(
    imports=['mmmobilemamba', 'tests.data.kill_hook'],
    allow_failed_imports=False)

data_root = 'data/tiny_imagenet_folder'
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
# two persistent workers: augmentation must not depend on which worker
# loads an image, nor on what it loaded before a resume
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True, pin_memory=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=20, num_workers=0, persistent_workers=False, pin_memory=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-2, by_epoch=True,
         begin=1, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=3, val_interval=1)
custom_hooks = [
    _base_.custom_hooks[0],
    dict(type='KillHook'),
]
# a checkpoint every 2 iterations inside an epoch as well
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(resume_interval=2))
randomness = dict(seed=0)
