# RetinaNet with a LoRA-adapted MobileMamba-B1 backbone (docs/peft.md): the
# model of ./retinanet_mobilemamba-b1_fpn_1x_coco.py, whose backbone starts
# from the classification checkpoint in its init_cfg, wrapped in
# MobileMambaLoRA.
# The backbone's weights and BatchNorm statistics stay frozen; rank-8
# adapters on its dense 1x1 Conv-BNs and rank-4 ones on SS2D's x / dt
# projections train, and so do the neck and the head (new for the task).
#
#   python tools/train.py configs/retinanet/retinanet_mobilemamba-b1-lora_fpn_1x_coco.py
#   python tools/test.py configs/retinanet/retinanet_mobilemamba-b1-lora_fpn_1x_coco.py CHECKPOINT
#
# Checkpoints hold only what trained (adapters, neck, head); another
# backbone checkpoint: --cfg-options
# model.module.backbone.init_cfg.checkpoint=PATH. For deployment, fold the
# adapters in: tools/model_converters/merge_lora.py CONFIG CKPT OUT
# --out-config OUT.py, then use OUT.py like
# ./retinanet_mobilemamba-b1_fpn_1x_coco.py.
_base_ = ['./retinanet_mobilemamba-b1_fpn_1x_coco.py']

model = dict(
    _delete_=True,
    type='MobileMambaLoRA',
    module=_base_.model,
    rank=8,
    targets=[
        dict(type=r'backbone\..*\.(pw1|pw2|proj|in_proj|out_proj|expand'
             r'|project)'),
        dict(type=r'backbone\..*\.ss2d', rank=4),
    ],
    trainable=['neck', 'bbox_head'])
