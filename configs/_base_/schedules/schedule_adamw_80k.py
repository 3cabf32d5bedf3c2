# 80k-iteration AdamW schedule of the MobileMamba ADE20K configs (release:
# AdamW, lr 1.2e-4, batch 32 = 8 GPUs x 4 images). Weight decay 0.01 and a
# linear (power 1) poly decay to 0 are this project's choices: the release's
# description does not state them (docs/architecture.md#downstream).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1.2e-4, betas=(0.9, 0.999), weight_decay=0.01))
# no gradient clipping unless a config adds optim_wrapper.clip_grad
param_scheduler = [
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        begin=0,
        end=80000,
        by_epoch=False)
]
# IterBasedTrainLoop whose data augmentation is seeded per sample, so that a
# resumed run continues exactly (mmmobilemamba.engine)
train_cfg = dict(
    type='ResumableIterBasedTrainLoop', max_iters=80000, val_interval=8000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # atomic checkpoint writes; random states saved and restored
    checkpoint=dict(
        type='ResumableCheckpointHook', by_epoch=False, interval=8000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # draws nothing unless enabled (tools/test.py --show-dir); then every
    # image (mmseg's default interval of 50 skips most of a small val set)
    visualization=dict(type='SegVisualizationHook', interval=1))
# --auto-scale-lr rescales lr from this total batch size
auto_scale_lr = dict(enable=False, base_batch_size=32)
