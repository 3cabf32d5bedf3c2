# DeepLabv3, MobileMamba-B4 backbone, 80k iterations on ADE20K at 512x512
# (the release reports 36.6 mIoU; docs/architecture.md#downstream).
#
#   python tools/train.py configs/deeplabv3/deeplabv3_mobilemamba-b4_80k_ade20k-512x512.py
#   python tools/test.py configs/deeplabv3/deeplabv3_mobilemamba-b4_80k_ade20k-512x512.py CKPT
#
# ASPP (256 channels, dilations 1/12/24/36) on the stride-64 map (448 ch);
# auxiliary FCN head on stage 2 (stride 32, 376 ch), loss weight 0.4.
# Params / FLOPs: docs/segmentation.md.
_base_ = [
    'mmseg::_base_/models/deeplabv3_r50-d8.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/schedules/schedule_adamw_80k.py',
    '../_base_/models/mobilemamba-b4_seg-backbone.py',
]

norm_cfg = _base_.sync_norm_cfg
model = dict(
    pretrained=None,
    data_preprocessor=_base_.seg_data_preprocessor,
    backbone=dict(_delete_=True, **_base_.mobilemamba_b4_backbone),
    decode_head=dict(
        in_channels=448,
        in_index=2,
        channels=256,
        dilations=(1, 12, 24, 36),
        num_classes=150,
        norm_cfg=norm_cfg),
    auxiliary_head=dict(
        in_channels=376,
        in_index=1,
        channels=256,
        num_classes=150,
        norm_cfg=norm_cfg))

# the release's gradient clipping, 0.1
optim_wrapper = dict(clip_grad=dict(max_norm=0.1, norm_type=2))
