"""The whole-model tools as a user runs them (issue 29), on T2 models with
random weights: tools/deployment/export.py writes the model and its
metadata and checks it; tools/deployment/infer.py runs the ONNX file with
torch, mmdet, mmseg, mmcv, mmengine and this package made unimportable,
and draws the result; tools/test.py evaluates the ONNX file with the
config's dataloader and evaluator and gets PyTorch's metric."""
import glob
import json
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from ..helpers import REPO, load_tool, run_tool
from .test_dense_export import build, cli_options, config_path

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

EXPORT = 'tools/deployment/export.py'
INFER = osp.join(REPO, 'tools', 'deployment', 'infer.py')
ENV = {'OMP_NUM_THREADS': '1'}
#: what infer.py's ONNX path must not import
POISONED = ('torch', 'torchvision', 'mmdet', 'mmseg', 'mmcv', 'mmengine',
            'mmpretrain', 'mmmobilemamba', 'executorch')


def run_infer_poisoned(*args):
    """infer.py in a child process in which importing any of POISONED
    fails."""
    code = ('import runpy, sys\n'
            f'for name in {POISONED!r}:\n'
            '    sys.modules[name] = None\n'
            f'sys.argv = [{INFER!r}] + {list(args)!r}\n'
            f'runpy.run_path({INFER!r}, run_name="__main__")\n')
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return proc.stdout


def checkpoint(name, folder):
    model, _ = build(name)
    path = osp.join(folder, f'{name}.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def resize_key(name):
    """The --cfg-options key of the test pipeline's Resize step."""
    from mmengine.config import Config
    cfg = Config.fromfile(config_path(name), import_custom_modules=False)
    dataset = cfg.test_dataloader.dataset
    key = 'test_dataloader.dataset'
    if 'dataset' in dataset:
        key += '.dataset'
        dataset = dataset.dataset
    steps = [s['type'] for s in dataset.pipeline]
    return f'{key}.pipeline.{steps.index("Resize")}'


def _metric(out, key):
    match = re.findall(rf'{key}: ([\d.]+)', out)
    assert match, out[-3000:]
    return float(match[-1])


@pytest.mark.slow
def test_segmentor_export_infer_and_evaluate(tiny_ade20k, tmp_path):
    """DeepLabv3: ONNX with its metadata, infer.py without torch, and
    tools/test.py's mIoU on the ONNX file equal to the checkpoint's."""
    from mmengine.config import Config
    name = 'deeplabv3'
    ckpt = checkpoint(name, str(tmp_path))
    onnx_path = str(tmp_path / 'seg.onnx')
    out = run_tool(EXPORT, config_path(name), ckpt, onnx_path, '--target',
                   'onnx', '--shape', '128', '192', '--cfg-options',
                   *cli_options(name), env=ENV)
    assert 'segmentation, input (1, 3, 128, 192)' in out, out
    assert re.search(r'label agreement 100\.000 % .* \(0 differ', out), out
    meta = json.load(open(onnx_path + '.json'))
    assert meta['output_format'] == 'label_map'
    assert meta['input']['shape'] == [1, 3, 128, 192]
    assert meta['preprocess']['keep_ratio'] is True
    assert meta['preprocess']['to_rgb'] is True
    assert len(meta['classes']) == 150 and len(meta['palette']) == 150

    images = sorted(glob.glob(
        osp.join(tiny_ade20k, 'images', 'validation', '*.jpg')))
    vis = str(tmp_path / 'vis.png')
    out = run_infer_poisoned(onnx_path, images[0], '--out', vis)
    assert 'label map' in out and osp.isfile(vis), out

    cfg = Config.fromfile(config_path(name), import_custom_modules=False)
    data = load_tool('dataset_converters/make_ade20k.py').ade20k_cfg_options(
        cfg, tiny_ade20k, crop_size=128, num_workers=0)
    data[resize_key(name) + '.scale'] = (192, 128)
    data = [f'{k}={v}'.replace(' ', '') for k, v in data.items()]
    common = ['--cfg-options', *cli_options(name), *data]
    torch_out = run_tool('tools/test.py', config_path(name), ckpt,
                         '--work-dir', str(tmp_path / 'w1'), *common, env=ENV)
    onnx_out = run_tool('tools/test.py', config_path(name), onnx_path,
                        '--work-dir', str(tmp_path / 'w2'), *common, env=ENV)
    for key in ('mIoU', 'aAcc'):
        assert abs(_metric(torch_out, key) - _metric(onnx_out, key)) <= 0.01


@pytest.mark.slow
def test_detector_export_infer_and_evaluate(tiny_coco, tmp_path):
    """SSDLite-320: ONNX with NMS in the graph, infer.py without torch, and
    tools/test.py's bbox mAP on the ONNX file equal to the checkpoint's."""
    from mmengine.config import Config
    name = 'ssdlite-320'
    ckpt = checkpoint(name, str(tmp_path))
    onnx_path = str(tmp_path / 'det.onnx')
    out = run_tool(EXPORT, config_path(name), ckpt, onnx_path, '--target',
                   'onnx', '--shape', '128', '128', '--cfg-options',
                   *cli_options(name), env=ENV)
    assert "outputs ['dets', 'labels'] (dets_labels)" in out, out
    assert ', 0 without a partner' in out, out
    meta = json.load(open(onnx_path + '.json'))
    assert meta['output_format'] == 'dets_labels'
    assert meta['preprocess']['keep_ratio'] is False
    assert len(meta['classes']) == 80  # COCO's names (the config's dataset)
    assert meta['postprocess']['iou_thr'] == 0.45

    image = sorted(glob.glob(
        osp.join(tiny_coco, 'val2017', '*.jpg')))[0]
    vis = str(tmp_path / 'vis.png')
    out = run_infer_poisoned(onnx_path, image, '--out', vis,
                             '--score-thr', '0.2')
    assert 'detections' in out and osp.isfile(vis), out

    cfg = Config.fromfile(config_path(name), import_custom_modules=False)
    data = load_tool('dataset_converters/make_coco.py').coco_cfg_options(
        cfg, tiny_coco, (128, 128), num_workers=0)
    data = [f'{k}={v}'.replace(' ', '') for k, v in data.items()]
    common = ['--cfg-options', *cli_options(name), *data,
              'test_dataloader.batch_size=1']
    dumps = [str(tmp_path / 'torch.pkl'), str(tmp_path / 'onnx.pkl')]
    torch_out = run_tool('tools/test.py', config_path(name), ckpt,
                         '--work-dir', str(tmp_path / 'w1'), '--out',
                         dumps[0], *common, env=ENV)
    onnx_out = run_tool('tools/test.py', config_path(name), onnx_path,
                        '--work-dir', str(tmp_path / 'w2'), '--out',
                        dumps[1], *common, env=ENV)
    for key in ('bbox_mAP', 'bbox_mAP_50'):
        assert abs(_metric(torch_out, key) - _metric(onnx_out, key)) <= 1e-3
    # the predictions themselves, in original-image pixels
    import pickle

    from mmmobilemamba.deploy.dense.parity import (compare_detections,
                                                   describe_detections,
                                                   detections_agree)
    want, got = (pickle.load(open(p, 'rb')) for p in dumps)
    assert len(want) == len(got) == 2
    for a, b in zip(want, got):
        a, b = a['pred_instances'], b['pred_instances']
        result = compare_detections(
            torch.cat([a['bboxes'], a['scores'][:, None]], 1).numpy(),
            a['labels'].numpy(),
            torch.cat([b['bboxes'], b['scores'][:, None]], 1).numpy(),
            b['labels'].numpy(), max_per_img=200)
        # boxes scaled back from 128 x 128 to the image: 2e-3 px
        assert result['compared'] > 100, describe_detections(result)
        assert detections_agree(result, box_tol=2e-3), \
            describe_detections(result)
