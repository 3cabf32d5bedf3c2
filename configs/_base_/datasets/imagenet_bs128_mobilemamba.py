# ImageNet-1K in mmpretrain's folder format (data/imagenet/{train,val}/ and
# meta/{train,val}.txt), 128 images per process, MobileMamba's recipe
# (docs/architecture.md#training). A small dataset in the same format:
#     python tools/dataset_converters/make_imagenet_folder.py ROOT
# then --cfg-options {train,val,test}_dataloader.dataset.data_root=ROOT.
#
# The crop size differs per variant (192 ... 512): a variant config rebuilds
# `train_pipeline` / `test_pipeline` for its size from the named pieces
# below (`_base_.flip`, `_base_.rand_augment`, ...). The pipelines written
# here are the 224 px ones.
dataset_type = 'ImageNet'
data_root = 'data/imagenet'
data_preprocessor = dict(
    num_classes=1000,
    # RGB ImageNet statistics (LoadImageFromFile reads BGR; to_rgb flips)
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
)
bgr_mean = data_preprocessor['mean'][::-1]
bgr_std = data_preprocessor['std'][::-1]
img_size = 224
# test: resize the shorter side to size / 0.875 (bicubic), centre crop
test_crop_ratio = 0.875

# RandomResizedCrop (scale 0.08-1) resampling at random with bilinear or
# bicubic, as the release does: mmpretrain's crop has one fixed
# interpolation, so RandomChoice picks one of two crops per image.
crop_bilinear = dict(
    type='RandomResizedCrop',
    scale=img_size,
    crop_ratio_range=(0.08, 1.0),
    backend='pillow',
    interpolation='bilinear')
crop_bicubic = dict(crop_bilinear, interpolation='bicubic')
flip = dict(type='RandomFlip', prob=0.5, direction='horizontal')
rand_augment = dict(
    type='RandAugment',
    policies='timm_increasing',
    num_policies=2,
    total_level=10,
    magnitude_level=9,
    magnitude_std=0.5,
    hparams=dict(
        pad_val=[round(x) for x in bgr_mean], interpolation='bicubic'))
random_erasing = dict(
    type='RandomErasing',
    erase_prob=0.25,
    mode='rand',
    min_area_ratio=0.02,
    max_area_ratio=1 / 3,
    fill_color=bgr_mean,
    fill_std=bgr_std)
test_resize = dict(
    type='ResizeEdge',
    scale=int(img_size / test_crop_ratio),
    edge='short',
    backend='pillow',
    interpolation='bicubic')

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomChoice', transforms=[[crop_bilinear], [crop_bicubic]]),
    flip,
    rand_augment,
    random_erasing,
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    test_resize,
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        pipeline=train_pipeline),
    # shards the data across processes under --launcher pytorch/slurm
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
