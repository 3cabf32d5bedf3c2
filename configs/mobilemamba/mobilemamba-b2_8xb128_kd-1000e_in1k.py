# MobileMamba-B2, the "†" strategy (release top-1 83.3): 1000
# epochs with knowledge distillation from a frozen teacher, otherwise the
# recipe of mobilemamba-b2_8xb128_in1k.py.
#
# The teacher is any mmpretrain classifier, named by its config (a file, an
# `mmpretrain::` config or a model name) and a local checkpoint; the release
# used TResNet-L-V2 (83.9% top-1, not in mmpretrain), the default here is
# mmpretrain's ConvNeXt-Base (83.66%), whose weights are at
# https://download.openmmlab.com/mmclassification/v0/convnext/convnext-base_32xb128_in1k_20221207-fbdb5eb9.pth
# Another teacher: --cfg-options model.teacher.config=... \
#     model.teacher.checkpoint=... [model.teacher.input_size=...]
# A missing checkpoint stops the run before training starts. The teacher is
# not saved: a checkpoint of this run tests and deploys with the plain config
#     python tools/test.py configs/mobilemamba/mobilemamba-b2_8xb128_in1k.py CKPT
# Batch: as the plain config, lr 3e-3 for a total batch of 8 x 128 = 1024;
# for another total batch B add --auto-scale-lr (lr * B / 1024).
_base_ = './mobilemamba-b2_8xb128_in1k.py'

model = dict(
    type='KDImageClassifier',
    teacher=dict(
        config='mmpretrain::convnext/convnext-base_32xb128_in1k.py',
        checkpoint='checkpoints/'
        'convnext-base_32xb128_in1k_20221207-fbdb5eb9.pth',
        # the student's (mixed) batch is resized to this for the teacher
        input_size=224),
    # loss = CE(mixed targets) + kd_weight * tau^2 * KL(teacher || student)
    kd_weight=5.0,
    tau=1.0)

# the cosine schedule follows max_epochs (it has no explicit end)
train_cfg = dict(max_epochs=1000)
