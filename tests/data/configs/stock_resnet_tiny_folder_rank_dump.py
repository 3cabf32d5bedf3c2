# The stock tiny config plus a hook that saves every rank's final weights.
_base_ = ['./stock_resnet_tiny_folder.py']
custom_imports = dict(
    imports=['mmmobilemamba', 'tests.data.rank_dump_hook'],
    allow_failed_imports=False)
custom_hooks = [dict(type='RankWeightDumpHook')]
