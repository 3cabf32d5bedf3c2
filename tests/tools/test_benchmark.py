"""tools/analysis_tools/benchmark.py: the table, the fusion and peer ratios
and the scan share are printed from real timings of the models named."""
import os.path as osp
import re

import pytest

from ..helpers import REPO, run_tool

T2 = osp.join(REPO, 'configs', 'mobilemamba', 'mobilemamba-t2_8xb128_in1k.py')
TOOL = 'tools/analysis_tools/benchmark.py'
ROW = re.compile(r'^\| (.+?) \| (\d+)x(\d+) \| ([\d.]+) \| ([\d.]+) \| '
                 r'([\d.]+) \|$', re.M)


def _rows(out: str) -> dict:
    return {m.group(1): (int(m.group(2)), int(m.group(3)),
                         float(m.group(4)), float(m.group(5)),
                         float(m.group(6))) for m in ROW.finditer(out)}


def test_fused_channels_last_and_scan_share():
    out = run_tool(TOOL, T2, '--shape', '64', '96', '--batch', '2',
                   '--rounds', '2', '--latency-iters', '2', '--warmup', '1',
                   '--threads', '1', '--fuse', '--channels-last',
                   '--scan-share')
    assert 'channels_last=True' in out
    rows = _rows(out)
    name = 'mobilemamba-t2_8xb128_in1k'
    assert set(rows) == {f'{name} (fused)', f'{name} (unfused)'}, out
    for h, w, ips, median, p90 in rows.values():
        assert (h, w) == (64, 96)  # a non-square input is honoured
        assert ips > 0 and 0 < median <= p90
    assert re.search(r'BN fusion speed-up .*: [\d.]+x wall, [\d.]+x CPU', out)
    share = re.search(r'selective scan share of the forward \(batch 2, '
                      r'forward ([\d.]+) ms\): timed calls ([\d.]+)% '
                      r'\(([\d.]+) ms\); zero-cost stand-in saves '
                      r'(-?[\d.]+)% \((-?[\d.]+) ms\)', out)
    assert share, out
    total, timed_pct, timed_ms = map(float, share.group(1, 2, 3))
    assert 0 < timed_pct < 100 and 0 < timed_ms < total
    assert abs(float(share.group(4))) < 100  # a difference of medians


@pytest.mark.slow
def test_peers_are_timed_at_their_own_resolution():
    out = run_tool(TOOL, T2, '--shape', '64', '--batch', '1', '--rounds',
                   '1', '--latency-iters', '1', '--warmup', '1', '--threads',
                   '1', '--peers')
    rows = _rows(out)
    expected = {'MobileNetV3-Large': 224, 'MobileViT-XS': 256,
                'MobileViT-S': 256, 'EfficientNet-B0': 224}
    for label, res in expected.items():
        assert rows[label][:2] == (res, res), out
        ratio = re.search(rf'ratio .*@64 / {label}@{res}: ([\d.]+)x wall',
                          out)
        assert ratio and float(ratio.group(1)) > 0, out


def test_cuda_request_without_cuda_is_a_clear_error():
    import torch
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    code, out = run_tool(TOOL, T2, '--device', 'cuda', check=False)
    assert code != 0 and 'CUDA is not available' in out


@pytest.mark.parametrize('config, what', [
    ('configs/retinanet/retinanet_mobilemamba-b1_fpn_1x_coco.py',
     'dense head (RetinaHead)'),
    ('configs/mask-rcnn/mask-rcnn_mobilemamba-b1_fpn_1x_coco.py',
     'dense head (RPNHead)'),
    ('configs/pspnet/pspnet_mobilemamba-b4_80k_ade20k-512x512.py',
     'decode head (PSPHead)'),
])
def test_detectors_and_segmentors_time_their_dense_part(config, what):
    out = run_tool(TOOL, config, '--shape', '96', '128', '--batch', '1',
                   '--rounds', '1', '--latency-iters', '1', '--warmup', '0',
                   '--threads', '1', '--scan-share')
    assert re.search(rf'timed: backbone .*{re.escape(what)}', out), out
    rows = _rows(out)
    name = osp.splitext(osp.basename(config))[0]
    assert rows[name][:2] == (96, 128) and rows[name][2] > 0, out
    assert 'selective scan share of the forward' in out


def test_peers_need_a_classifier():
    code, out = run_tool(
        TOOL, 'configs/retinanet/retinanet_mobilemamba-b1_fpn_1x_coco.py',
        '--peers', check=False)
    assert code != 0 and '--peers compares classifiers' in out
