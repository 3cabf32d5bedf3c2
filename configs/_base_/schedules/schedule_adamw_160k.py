# 160k-iteration version of schedule_adamw_80k.py (Semantic FPN).
_base_ = ['./schedule_adamw_80k.py']

param_scheduler = [
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        begin=0,
        end=160000,
        by_epoch=False)
]
train_cfg = dict(max_iters=160000, val_interval=16000)
default_hooks = dict(checkpoint=dict(interval=16000))
