# MobileMamba's ImageNet schedule (docs/architecture.md#training):
# 300 epochs, AdamW 3e-3 for a
# total batch of 1024 (8 x 128), weight decay 0.05 except on 1-D parameters
# and biases, 20 linear warm-up epochs then cosine, both per iteration; AMP,
# gradient clipping at 5, EMA 0.9998 per iteration (with a warm-up).
#
# The lr is used as written. For another total batch B (processes x
# batch_size), scale it linearly: `tools/train.py --auto-scale-lr` multiplies
# it by B / 1024 (`auto_scale_lr` below), or set
# optim_wrapper.optimizer.lr=3e-3*B/1024 yourself. The warm-up start and the
# cosine floor are ratios of the lr (3e-6 and 3e-5 at 3e-3), so they follow.
base_lr = 3e-3
optim_wrapper = dict(
    # on a machine without CUDA, tools/train.py swaps this for OptimWrapper
    # (fp32) and says so
    type='AmpOptimWrapper',
    optimizer=dict(
        type='AdamW', lr=base_lr, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0),
    clip_grad=dict(max_norm=5.0),
)

warmup_epochs = 20
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,  # 3e-6 / 3e-3
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    # no `end`: the cosine runs to the last epoch of train_cfg, whatever
    # max_epochs is
    dict(
        type='CosineAnnealingLR',
        eta_min_ratio=1e-2,  # 3e-5 / 3e-3
        by_epoch=True,
        begin=warmup_epochs,
        convert_to_iter_based=True),
]

# epoch-based, and resumable in the middle of an epoch (mmmobilemamba.engine)
train_cfg = dict(
    type='ResumableEpochBasedTrainLoop', max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# mmpretrain's convention: declared, enabled only by --auto-scale-lr
auto_scale_lr = dict(base_batch_size=1024)

# EMA of the weights and BN statistics, updated every iteration; validation
# and saved checkpoints use the EMA weights (the release reports
# the EMA's accuracy). momentum = 1 - 0.9998. WarmupEMA's decay starts small and
# reaches 0.9998 after ~45k iterations (of 375k at batch 1024), so a short
# run averages its recent weights instead of the initialisation.
custom_hooks = [
    dict(
        type='EMAHook',
        ema_type='WarmupEMA',
        momentum=2e-4,
        update_buffers=True,
        priority='ABOVE_NORMAL')
]
