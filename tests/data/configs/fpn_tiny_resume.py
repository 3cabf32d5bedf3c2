# configs/sem-fpn/sem-fpn_mobilemamba-b4_160k_ade20k-512x512.py with a KillHook
# (tests/data/kill_hook.py) for the kill-and-resume test, idle unless
# custom_hooks.0.after_iter is set; the test shrinks data and schedule
# through --cfg-options.
_base_ = [
    '../../../configs/sem-fpn/sem-fpn_mobilemamba-b4_160k_ade20k-512x512.py'
]
custom_imports = dict(
    imports=['mmmobilemamba', 'tests.data.kill_hook'],
    allow_failed_imports=False)
custom_hooks = [dict(type='KillHook')]
randomness = dict(seed=0)
