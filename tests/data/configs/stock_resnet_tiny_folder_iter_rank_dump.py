# The stock tiny config with the rank weight dump, made iteration-based the
# way the segmentation configs are: an InfiniteSampler and persistent
# dataloader workers. 120 images over 2 ranks at batch 16 are 3.75 batches
# a pass per rank, so 6 iterations go into the second pass.
_base_ = ['./stock_resnet_tiny_folder_rank_dump.py']
train_dataloader = dict(
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=False, T_max=6)]
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=6, val_interval=6)
default_hooks = dict(
    logger=dict(interval=1, log_metric_by_epoch=False),
    checkpoint=dict(by_epoch=False, interval=6))
log_processor = dict(by_epoch=False)
