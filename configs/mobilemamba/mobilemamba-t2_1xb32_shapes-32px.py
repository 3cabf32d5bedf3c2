# The source task of docs/peft.md: MobileMamba-T2 trained from scratch on
# ten procedural shape classes at 32 px (3000 train / 500 val images),
# written by
#     python tools/dataset_converters/make_imagenet_folder.py \
#         data/peft/shapes32 --source shapes --size 32 \
#         --train-per-class 300 --val-per-class 50
# Its checkpoint is the backbone the PEFT configs (mobilemamba-t2-{full,
# linear,lora,lora-r16}_1xb32_digits-32px.py) start from.
# The digits proof-of-learning recipe
# (./mobilemamba-t2_1xb32_digits-32px.py) with the data, the class
# names, horizontal flips (a mirrored shape is that shape) and a 12-epoch
# schedule changed.
_base_ = './mobilemamba-t2_1xb32_digits-32px.py'

data_root = 'data/peft/shapes32'
metainfo = dict(classes=[
    'circle', 'square', 'triangle', 'cross', 'ring', 'horizontal_stripes',
    'vertical_stripes', 'checkerboard', 'diamond', 'dots'
])
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomChoice',
        transforms=[[_base_.crop_bilinear], [_base_.crop_bicubic]]),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(_base_.rand_augment, magnitude_level=5),
    _base_.random_erasing,
    dict(type='PackInputs'),
]
train_dataloader = dict(
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=12, val_interval=6)
