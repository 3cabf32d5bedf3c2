# Semantic FPN, MobileMamba-B4 backbone, 160k iterations on ADE20K at 512x512
# (the release reports 42.5 mIoU; docs/architecture.md#downstream).
#
#   python tools/train.py configs/sem-fpn/sem-fpn_mobilemamba-b4_160k_ade20k-512x512.py
#   python tools/test.py configs/sem-fpn/sem-fpn_mobilemamba-b4_160k_ade20k-512x512.py CKPT
#
# FPN neck on the three backbone maps (strides 16/32/64, channels
# 200/376/448) -> 3 x 256 channels; FPN head (128 channels) merges them at
# stride 16. The decode head trains with 10x the backbone's lr (release).
# Params / FLOPs: docs/segmentation.md.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/schedule_adamw_160k.py',
    '../_base_/models/mobilemamba-b4_seg-backbone.py',
]

norm_cfg = _base_.sync_norm_cfg
model = dict(
    pretrained=None,
    data_preprocessor=_base_.seg_data_preprocessor,
    backbone=dict(_delete_=True, **_base_.mobilemamba_b4_backbone),
    neck=dict(in_channels=[200, 376, 448], out_channels=256, num_outs=3),
    decode_head=dict(
        in_channels=[256, 256, 256],
        in_index=[0, 1, 2],
        feature_strides=[16, 32, 64],
        channels=128,
        num_classes=150,
        norm_cfg=norm_cfg))

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=10.0)}))
