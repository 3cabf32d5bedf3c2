# The MobileMamba-T2 ImageNet config (model, augmentation, AdamW, warm-up EMA,
# clipping, crash-safe checkpoints) for 10 classes of 32 px images: its
# pipelines re-stated at 32 px, and a schedule with a one-epoch warm-up
# followed by cosine annealing. The test configs that include it set the
# data root, loaders and epochs.
_base_ = ['../../../configs/mobilemamba/mobilemamba-t2_8xb128_in1k.py']

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
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min_ratio=1e-2, by_epoch=True,
         begin=1, convert_to_iter_based=True),
]
randomness = dict(seed=0)
