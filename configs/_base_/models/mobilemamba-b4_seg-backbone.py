# MobileMamba-B4 as a segmentation backbone, shared by the ADE20K configs in
# configs/{sem-fpn,deeplabv3,pspnet}/ (docs/architecture.md#downstream).
#
# ImageNet-pretrained weights come from a local file through init_cfg (never a
# download): a classification checkpoint of this project (keys
# 'backbone.*'), e.g. one converted from the release with
# tools/model_converters/. Put it at `checkpoints/mobilemamba_b4_in1k.pth`, or
# point the config elsewhere:
#     --cfg-options model.backbone.init_cfg.checkpoint=PATH
# or train from scratch:
#     --cfg-options model.backbone.init_cfg=None
custom_imports = dict(imports=['mmmobilemamba'], allow_failed_imports=False)

mobilemamba_b4_pretrained = 'checkpoints/mobilemamba_b4_in1k.pth'
# out_indices (1, 2, 3): outputs of stages 1, 2, 3 at strides 16 / 32 / 64
# with (200, 376, 448) channels (docs/architecture.md#overview). In the
# heads' in_index these are 0, 1, 2.
mobilemamba_b4_backbone = dict(
    type='MobileMamba',
    arch='B4',
    out_indices=(1, 2, 3),
    init_cfg=dict(
        type='Pretrained',
        checkpoint=mobilemamba_b4_pretrained,
        prefix='backbone.'))

# Heads use SyncBN for multi-GPU training. tools/train.py and tools/test.py
# turn every SyncBN into BN (with a warning) when run without a launcher, so
# the same configs run in one CPU process; mmseg's init_model /
# MMSegInferencer run SyncBN layers in eval mode, where they act as BN.
sync_norm_cfg = dict(type='SyncBN', requires_grad=True)

seg_crop_size = (512, 512)  # named apart from mmseg bases' crop_size
seg_data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    # training batches are padded to the crop size
    size=seg_crop_size,
    # whole-image testing pads any input to a multiple of the coarsest stride
    # (64) so every feature map is an exact 2x of the next; the prediction is
    # cropped back and resized to the original image size.
    test_cfg=dict(size_divisor=64))
