# Full fine-tuning baseline of docs/peft.md: MobileMamba-T2, its backbone
# from the shapes checkpoint of ./mobilemamba-t2_1xb32_shapes-32px.py
# (through init_cfg), every parameter trained on 300 real digit scans at 32
# px (30 per digit; 500 held-out val scans), written by
#     python tools/dataset_converters/make_imagenet_folder.py \
#         data/peft/digits32 --source digits --size 32 \
#         --train-per-class 30 --val-per-class 50
# The digits recipe (./mobilemamba-t2_1xb32_digits-32px.py) for 15 epochs
# without EMA (the comparison is between training methods, all four use
# this recipe); the head starts afresh.
_base_ = './mobilemamba-t2_1xb32_digits-32px.py'

# The source backbone; another one: --cfg-options
# model.backbone.init_cfg.checkpoint=PATH (LoRA configs:
# model.module.backbone.init_cfg.checkpoint=PATH)
pretrained = 'work_dirs/peft/shapes_t2/epoch_12.pth'
data_root = 'data/peft/digits32'

model = dict(
    backbone=dict(
        init_cfg=dict(
            _delete_=True,  # the base config's is None
            type='Pretrained',
            checkpoint=pretrained,
            prefix='backbone.')))
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=15, val_interval=15)
custom_hooks = []  # no EMA
