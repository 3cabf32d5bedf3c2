# The MobileMamba-T2 ImageNet config (model, augmentation, AdamW schedule,
# warm-up EMA, clipping, crash-safe checkpoints) on a tiny 10-class folder of
# 32 px images, 5 iterations an epoch, for the kill-and-resume tests. A
# KillHook (tests/data/kill_hook.py) is in place, idle unless
# custom_hooks.1.after_iter or custom_hooks.1.during_save_at_iter is set.
_base_ = ['./_base_mobilemamba_t2_32px.py']
custom_imports = dict(
    imports=['mmmobilemamba', 'tests.data.kill_hook'],
    allow_failed_imports=False)

data_root = 'data/tiny_imagenet_folder'
# two persistent workers: augmentation must not depend on which worker
# loads an image, nor on what it loaded before a resume
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True, pin_memory=False,
    dataset=dict(data_root=data_root, pipeline=_base_.train_pipeline))
val_dataloader = dict(
    batch_size=20, num_workers=0, persistent_workers=False, pin_memory=False,
    dataset=dict(data_root=data_root, pipeline=_base_.test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_epochs=3, val_interval=1)
custom_hooks = [
    _base_.custom_hooks[0],
    dict(type='KillHook'),
]
# a checkpoint every 2 iterations inside an epoch as well
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(resume_interval=2))
