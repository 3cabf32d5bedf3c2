"""tools/analysis_tools/get_flops.py on the segmentation configs: what its
mmseg branch counts (backbone + neck + decode head, not the auxiliary
head). A small input keeps the trace cheap; docs/segmentation.md has the
512 x 512 table."""
import importlib.util
import os.path as osp

import pytest

from ..helpers import REPO


def _get_flops():
    path = osp.join(REPO, 'tools', 'analysis_tools', 'get_flops.py')
    spec = importlib.util.spec_from_file_location('get_flops_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('config, parts', [
    ('pspnet/pspnet_mobilemamba-b4_80k_ade20k-512x512.py',
     ['backbone', 'decode_head']),
    ('sem-fpn/sem-fpn_mobilemamba-b4_160k_ade20k-512x512.py',
     ['backbone', 'neck', 'decode_head']),
])
def test_mmseg_branch_counts_backbone_neck_and_decode_head(config, parts):
    tool = _get_flops()
    res = tool.analyse(osp.join(REPO, 'configs', config), (128, 128))
    assert res['shape'] == (128, 128)
    assert 'auxiliary head not counted' in res['counted']
    assert [k for k, v in res['by_part'].items() if v[0]] == parts
    assert res['params'] == sum(p for p, _ in res['by_part'].values())
    if 'pspnet' in config:  # the auxiliary FCN head is in the model only
        assert res['params_all'] - res['params'] > 0.8e6
    else:
        assert res['params_all'] == res['params']
    assert all(f > 0 for _, f in res['by_part'].values())
    lines = tool.format_report(config, res)
    assert any(line.startswith('FLOPs: ') for line in lines)
