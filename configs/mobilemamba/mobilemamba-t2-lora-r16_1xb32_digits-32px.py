# ./mobilemamba-t2-lora_1xb32_digits-32px.py at rank 16 on the 1x1 Conv-BNs
# (SS2D's projections keep rank 4: their dt rank is 7-14).
_base_ = './mobilemamba-t2-lora_1xb32_digits-32px.py'

model = dict(rank=16)
