"""tools/analysis_tools/get_flops.py on the detection configs."""
import importlib.util
import os.path as osp

import pytest

from ..helpers import REPO, run_tool

pytest.importorskip('mmdet')

TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'get_flops.py')


def _tool():
    spec = importlib.util.spec_from_file_location('get_flops', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_sizes():
    from mmengine.config import Config

    from mmmobilemamba.analysis.dense_parts import fixed_test_size
    fpn = Config.fromfile(osp.join(
        REPO, 'configs', 'retinanet',
        'retinanet_mobilemamba-b1_fpn_1x_coco.py'))
    assert fixed_test_size(fpn) is None  # -> the 1280x800 default
    for size in (320, 512):
        ssd = Config.fromfile(osp.join(
            REPO, 'configs', 'ssdlite',
            f'ssdlite_mobilemamba-b1_600e_coco-{size}.py'))
        assert fixed_test_size(ssd) == (size, size)


def test_counts_backbone_neck_and_dense_head():
    tool = _tool()
    config = osp.join(REPO, 'configs', 'retinanet',
                      'retinanet_mobilemamba-b1_fpn_1x_coco.py')
    small = tool.analyse(config, (64, 64))
    assert set(small['by_part']) == {'backbone', 'neck', 'dense_head'}
    assert sum(f for _, f in small['by_part'].values()) == small['flops']
    assert small['params'] == sum(p for p, _ in small['by_part'].values())
    # RetinaNet has no RoI head: the counted part is the whole model
    assert small['params'] == small['params_all']
    assert abs(small['params_all'] / 1e6 - 27.1) < 0.15
    # the selective scan has a FLOP handle (ops/complexity.py)
    assert not [op for op in small['uncounted'] if 'SelectiveScan' in op]
    # convolutional neck and head: FLOPs grow with the pixel count (x4)
    big = tool.analyse(config, (128, 128))
    for part in ('neck', 'dense_head'):
        ratio = big['by_part'][part][1] / small['by_part'][part][1]
        assert 3.5 < ratio < 4.5, (part, ratio)


def test_two_stage_counts_rpn_not_roi_head():
    tool = _tool()
    res = tool.analyse(
        osp.join(REPO, 'configs', 'mask-rcnn',
                 'mask-rcnn_mobilemamba-b1_fpn_1x_coco.py'),
        (64, 64))
    assert 'RPNHead' in res['counted'] and 'RoI head' in res['counted']
    assert res['params_all'] > res['params'] + 10e6  # RoI heads left out


def test_cli_prints_the_convention(tmp_path):
    out = run_tool(TOOL,
                   'configs/ssdlite/ssdlite_mobilemamba-b1_600e_coco-320.py',
                   '--shape', '96', '96')
    assert 'input: 1x3x96x96' in out
    assert 'multiply-accumulates' in out and '9*B*L*D*N + B*D*L' in out
    assert 'FLOPs:' in out and 'params:' in out


def test_unsupported_scope_is_named(tmp_path):
    cfg = tmp_path / 'cls.py'
    cfg.write_text("default_scope = 'nowhere'\nmodel = dict(type='X')\n")
    code, out = run_tool(TOOL, str(cfg), check=False)
    assert code != 0 and "default_scope 'nowhere'" in out
