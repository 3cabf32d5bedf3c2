# RetinaNet, MobileMamba-B1 backbone, 1x schedule on COCO (the release
# reports 39.6 box AP; setup: docs/architecture.md#downstream).
#
#   python tools/train.py configs/retinanet/retinanet_mobilemamba-b1_fpn_1x_coco.py
#   python tools/test.py configs/retinanet/retinanet_mobilemamba-b1_fpn_1x_coco.py CHECKPOINT
#
# Neck: DeconvFPN with ONE 2x2 stride-2 transposed conv on the fused stride-16
# level, so the outputs are strides 8, 16, 32, 64 and an extra stride-128
# level from a stride-2 conv on the backbone's 448-channel stride-64 map.
#
# Params 27.00 M (release 27.1 M); FLOPs at 1280x800, backbone + neck + head:
# 168.70 G (release 151 G). Details: docs/detection.md (get_flops.py).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/schedules/schedule_adamw_1x.py',
    '../_base_/models/mobilemamba-b1_det-backbone.py',
]

model = dict(
    # 64 = the backbone's coarsest stride: every level divides evenly
    data_preprocessor=dict(pad_size_divisor=64),
    # BN statistics stay those of the pretrained backbone (batch 2 per GPU)
    backbone=dict(
        _base_.mobilemamba_b1_backbone, _delete_=True, norm_eval=True),
    neck=dict(
        _delete_=True,
        type='DeconvFPN',
        in_channels=[200, 376, 448],
        out_channels=256,
        num_outs=5,
        num_deconvs=1,
        add_extra_convs='on_input'))
