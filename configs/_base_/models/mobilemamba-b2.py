# MobileMamba-B2 image classifier (docs/architecture.md#variants):
# trained and tested at 384 px,
# 17.1 M parameters, 2427 M FLOPs (release; multiply-accumulates by
# mmengine's FlopAnalyzer on the unfused model, scan counted as
# 9*B*L*D*N + B*D*L), ImageNet-1K top-1 81.6 / 83.3 (300 ep / 1000 ep + KD).
# B1, B2 and B4 are one network trained at 256 / 384 / 512 px.
#
# The modules are registered by `import mmmobilemamba`; a full config that
# inherits this piece adds
#     custom_imports = dict(
#         imports=['mmmobilemamba'], allow_failed_imports=False)
# Deployment: a checkpoint from tools/deployment/fuse_bn.py loads with
#     --cfg-options model.backbone.deploy=True model.head.deploy=True
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='MobileMamba',
        arch='B2',
        out_indices=(3, ),
        drop_path_rate=0.03,
        # None keeps the zero-init branches (docs/architecture.md#bricks).
        init_cfg=None),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='BNLinearClsHead',
        num_classes=1000,
        in_channels=448,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)),
    # Mixup 0.8 / CutMix 1.0, one of the two per batch (release recipe).
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))
