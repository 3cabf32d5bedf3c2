# A new user's first run: the MobileMamba-T2 ImageNet config unchanged but
# for the data (scikit-learn's handwritten-digit scans at 32 px in
# mmpretrain's ImageNet folder format), the number of classes and a short
# schedule. Its augmentation (RandAugment, Mixup/CutMix, random erasing,
# 0.08-1 crops), AdamW, clipping and EMA are the ImageNet recipe's.
_base_ = ['./_base_mobilemamba_t2_32px.py']

data_root = 'data/digits32'
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True, pin_memory=False,
    dataset=dict(data_root=data_root, pipeline=_base_.train_pipeline))
val_dataloader = dict(
    batch_size=100, num_workers=0, persistent_workers=False,
    pin_memory=False,
    dataset=dict(data_root=data_root, pipeline=_base_.test_pipeline))
test_dataloader = val_dataloader

# the short schedule: the lr a user picks for batch 32, warm-up 1 epoch,
# then cosine to the end (the base's schedule)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
train_cfg = dict(max_epochs=8, val_interval=8)
default_hooks = dict(logger=dict(interval=10))
