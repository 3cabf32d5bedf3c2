# Runtime of the classification configs (mmpretrain); the detection and
# segmentation configs take mmdet's / mmseg's own default_runtime.py.
default_scope = 'mmpretrain'
# registers MobileMamba, its head and the distiller in mmpretrain
custom_imports = dict(imports=['mmmobilemamba'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # keep the last 3 epochs and the best (EMA) top-1. Crash-safe: atomic
    # writes, random states and data position saved, and a checkpoint every
    # 500 iterations inside an epoch (only the latest kept), so
    # `tools/train.py CONFIG --resume` after a kill continues exactly
    checkpoint=dict(
        type='ResumableCheckpointHook', interval=1, max_keep_ckpts=3,
        save_best='auto', resume_interval=500),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)

env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # nccl on GPUs; on a machine without CUDA tools/train.py starts gloo
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
