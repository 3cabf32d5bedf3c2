# configs/retinanet/retinanet_mobilemamba-b1_fpn_1x_coco.py with a KillHook
# (tests/data/kill_hook.py)
# for the kill-and-resume test, idle unless custom_hooks.0.after_iter is set;
# the test shrinks data and model through --cfg-options.
_base_ = ['../../../configs/retinanet/retinanet_mobilemamba-b1_fpn_1x_coco.py']
custom_imports = dict(
    imports=['mmmobilemamba', 'tests.data.kill_hook'],
    allow_failed_imports=False)
custom_hooks = [dict(type='KillHook')]
randomness = dict(seed=0)
