# Linear probe of docs/peft.md: ./mobilemamba-t2-full_1xb32_digits-32px.py
# with the whole backbone frozen (weights and BatchNorm statistics): only the
# BN-Linear head trains.
_base_ = './mobilemamba-t2-full_1xb32_digits-32px.py'

model = dict(backbone=dict(frozen_stages=3))
