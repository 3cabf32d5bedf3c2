# LoRA fine-tuning of MobileMamba-T2 (docs/peft.md): the model of
# ./mobilemamba-t2-full_1xb32_digits-32px.py (its backbone loaded from the
# shapes checkpoint through init_cfg) wrapped in MobileMambaLoRA. Adapters of
# rank 4 on every dense 1x1 Conv-BN of the backbone (FFNs, MRFFI output,
# SS2D in/out projections, PatchMerging expand/project) and on SS2D's x / dt
# projections (per scan direction); the head trains in full; everything
# else, BatchNorm statistics included, stays the shapes backbone's.
#
# Its checkpoints hold only what trained (adapters + head). Test one with
# this config; fold it into a plain T2 checkpoint for deployment with
#     python tools/model_converters/merge_lora.py CONFIG CKPT OUT \
#         --out-config OUT.py
_base_ = './mobilemamba-t2-full_1xb32_digits-32px.py'

model = dict(
    _delete_=True,
    type='MobileMambaLoRA',
    module=_base_.model,
    rank=4,
    # alpha None: alpha = rank, the update is B @ A unscaled
    targets=[
        # ConvBN names of the 1x1s; the depthwise ones (dw1, dw2, pre_dw,
        # post_dw, merge.dw, local_op) take no adapter (docs/peft.md)
        dict(type=r'backbone\..*\.(pw1|pw2|proj|in_proj|out_proj|expand'
             r'|project)'),
        # x_proj (K, R+2, d_inner) and dt_proj (K, d_inner, R); R is 7-14
        # in T2, so their rank stays at 4 whatever `rank` is
        dict(type=r'backbone\..*\.ss2d', rank=4),
    ],
    trainable=['head'],
    train_norms=False,
    train_scan_params=False)
