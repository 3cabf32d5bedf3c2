# SSDLite, MobileMamba-B1 backbone, 320x320 input, COCO (the release reports
# 24.0 box AP; docs/architecture.md#downstream).
#
#   python tools/train.py configs/ssdlite/ssdlite_mobilemamba-b1_600e_coco-320.py
#   python tools/test.py configs/ssdlite/ssdlite_mobilemamba-b1_600e_coco-320.py CKPT
#
# Everything not set here is mmdet's SSDLite-MobileNetV2 recipe: depthwise SSD
# neck and head with BN (eps 1e-3, momentum 0.03) and ReLU6, anchors at
# strides [16, 32, 64, 107, 160, 320], Expand + MinIoURandomCrop + resize +
# flip + photometric distortion, 120 epochs over the train set repeated 5x
# (600 effective epochs), batch 24 per GPU x 8 = 192, cosine lr.
# The data root of the *train* set is one level deeper (RepeatDataset):
#     --cfg-options train_dataloader.dataset.dataset.data_root=...
#
# Params 17.97 M (release 18.0 M); FLOPs at 320x320: 1.74 G (release 1.7 G).
# Details: docs/detection.md (get_flops.py).
_base_ = [
    'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py',
    '../_base_/models/mobilemamba-b1_det-backbone.py',
]

model = dict(
    backbone=dict(
        _base_.mobilemamba_b1_backbone, _delete_=True, out_indices=(1, 2)),
    neck=dict(
        in_channels=(200, 376),
        out_channels=(200, 376, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(200, 376, 512, 256, 256, 128)))

# AdamW at 2.4e-3 for batch 192 (the release's). Weight decay and its exemption
# for norm layers are not stated there: we use the FPN detectors' 0.05 / none.
optim_wrapper = dict(
    optimizer=dict(
        _delete_=True, type='AdamW', lr=2.4e-3, betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0))
