# Mask R-CNN, MobileMamba-B1 backbone, 1x schedule on COCO (the release
# reports 40.6 box AP / 37.4 mask AP; docs/architecture.md#downstream).
#
#   python tools/train.py configs/mask-rcnn/mask-rcnn_mobilemamba-b1_fpn_1x_coco.py
#   python tools/test.py configs/mask-rcnn/mask-rcnn_mobilemamba-b1_fpn_1x_coco.py CKPT
#
# Neck: DeconvFPN with TWO chained 2x2 stride-2 transposed convs on the fused
# stride-16 level, so the five outputs are strides 4, 8, 16, 32, 64, as the
# stock RPN anchors and RoI extractors expect.
#
# Params 37.90 M (release 38.0 M); FLOPs at 1280x800, backbone + neck + RPN
# head: 123.38 G (release 178 G). Details: docs/detection.md (get_flops.py).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
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
        num_deconvs=2))
