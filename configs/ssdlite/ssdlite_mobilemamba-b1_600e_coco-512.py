# SSDLite, MobileMamba-B1 backbone, 512x512 input, COCO (the release reports
# 29.5 box AP; docs/architecture.md#downstream).
#
#   python tools/train.py configs/ssdlite/ssdlite_mobilemamba-b1_600e_coco-512.py
#
# Same model and schedule as the 320 config; the input is 512x512, so the six
# SSD levels are 32, 16, 8, 4, 2 and 1 cells wide, i.e. strides 16, 32, 64,
# 128, 256 and 512. The anchors here fit that: those strides, and the 320
# config's anchor sizes scaled by 512 / 320 = 1.6 (same sizes relative to the
# image). NOTE: the release's 512 model reuses the 320 anchors unchanged
# (strides [16, 32, 64, 107, 160, 320], sizes 48-320 px), which leaves the
# coarse levels' anchor centres off the 512 image's grid; to reproduce it
# exactly, override model.bbox_head.anchor_generator with those values.
#
# Params 17.97 M (release 18.0 M); FLOPs at 512x512: 4.46 G (release 4.4 G).
# Details: docs/detection.md (get_flops.py).
_base_ = './ssdlite_mobilemamba-b1_600e_coco-320.py'

input_size = 512
model = dict(
    bbox_head=dict(
        anchor_generator=dict(
            strides=[16, 32, 64, 128, 256, 512],
            min_sizes=[77, 160, 240, 323, 405, 486],
            max_sizes=[160, 240, 323, 405, 486, 512])))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='Expand',
        mean=[123.675, 116.28, 103.53],
        to_rgb=True,
        ratio_range=(1, 4)),
    dict(
        type='MinIoURandomCrop',
        min_ious=(0.1, 0.3, 0.5, 0.7, 0.9),
        min_crop_size=0.3),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='PhotoMetricDistortion',
        brightness_delta=32,
        contrast_range=(0.5, 1.5),
        saturation_range=(0.5, 1.5),
        hue_delta=18),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
