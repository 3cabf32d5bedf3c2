# The release's 1x COCO schedule of the MobileMamba FPN detectors
# (docs/architecture.md#downstream):
# 12 epochs, AdamW lr 2e-4, weight decay 0.05 (none on norm layers), gradient
# clipping at 0.1, linear warm-up over 500 iterations, then constant until
# epoch 6 and cosine decay to 0 over epochs 6-12. Batch 16 = 8 GPUs x 2.
# EpochBasedTrainLoop that can also resume inside an epoch (checkpoints
# every N iterations: --cfg-options default_hooks.checkpoint.resume_interval=N)
train_cfg = dict(
    type='ResumableEpochBasedTrainLoop', max_epochs=12, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=500),
    dict(
        type='CosineAnnealingLR',
        T_max=6,
        eta_min=0.0,
        begin=6,
        end=12,
        by_epoch=True,
        convert_to_iter_based=True),
]

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999),
                   weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0),
    clip_grad=dict(max_norm=0.1, norm_type=2))

# the lr above is for a total batch of 16; --auto-scale-lr rescales it
auto_scale_lr = dict(enable=False, base_batch_size=16)
