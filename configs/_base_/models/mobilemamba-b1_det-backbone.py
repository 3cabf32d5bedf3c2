# MobileMamba-B1 as a detection backbone, shared by the configs in
# configs/{retinanet,mask-rcnn,ssdlite}/.
#
# ImageNet-pretrained weights come from a local file through init_cfg (never a
# download): a classification checkpoint of this project (keys
# 'backbone.*'), e.g. one converted from the release with
# tools/model_converters/. Put it at `checkpoints/mobilemamba_b1_in1k.pth`, or
# point the config elsewhere:
#     --cfg-options model.backbone.init_cfg.checkpoint=PATH
# or train from scratch:
#     --cfg-options model.backbone.init_cfg=None
custom_imports = dict(imports=['mmmobilemamba'], allow_failed_imports=False)

mobilemamba_b1_pretrained = 'checkpoints/mobilemamba_b1_in1k.pth'
# Feature maps of out_indices (1, 2, 3): strides 16 / 32 / 64 with
# (200, 376, 448) channels (docs/architecture.md#overview).
mobilemamba_b1_backbone = dict(
    type='MobileMamba',
    arch='B1',
    out_indices=(1, 2, 3),
    init_cfg=dict(
        type='Pretrained',
        checkpoint=mobilemamba_b1_pretrained,
        prefix='backbone.'))
