# mobilemamba-t2_1xb32_digits-32px.py plus knowledge distillation from the
# ResNet-18 of ../resnet/resnet18_1xb64_digits-32px.py (train that first):
# the check that distillation does its job at CPU scale
# (docs/classification.md).
# Its checkpoints hold the student only; test them with the plain config.
_base_ = './mobilemamba-t2_1xb32_digits-32px.py'

model = dict(
    type='KDImageClassifier',
    teacher=dict(
        config='configs/resnet/resnet18_1xb64_digits-32px.py',
        checkpoint='work_dirs/resnet18_1xb64_digits-32px/epoch_10.pth'),
    kd_weight=5.0,
    tau=1.0)
