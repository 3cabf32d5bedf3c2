# The real MobileMamba-T2 ImageNet config (its model, augmentation, AdamW
# schedule, EMA and clipping) shrunk to the generated 10-class, 56 px folder
# so that a 2-process CPU run takes seconds; every rank saves its final
# weights (tests/data/rank_dump_hook.py) for the sync check.
_base_ = ['../../../configs/mobilemamba/mobilemamba-t2_8xb128_in1k.py']
custom_imports = dict(
    imports=['mmmobilemamba', 'tests.data.rank_dump_hook'],
    allow_failed_imports=False)

data_root = 'data/tiny_imagenet_folder'
num_classes = 10
img_size = 48
model = dict(head=dict(num_classes=num_classes))
data_preprocessor = dict(num_classes=num_classes)

crop = dict(_base_.crop_bilinear, scale=img_size, crop_ratio_range=(0.5, 1.))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    crop,
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
    batch_size=8, num_workers=0, persistent_workers=False, pin_memory=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False, pin_memory=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, T_max=1)]
train_cfg = dict(max_epochs=1, val_interval=1)
custom_hooks = [
    dict(type='EMAHook', momentum=1e-2, update_buffers=True,
         priority='ABOVE_NORMAL'),
    dict(type='RankWeightDumpHook'),
]
default_hooks = dict(logger=dict(interval=2))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
