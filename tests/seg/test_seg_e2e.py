"""End to end on generated ADE20K-format data, as a user runs it: a few
training iterations of each config (from scratch, small crops, the
configs' own training dataloader: InfiniteSampler, persistent workers) into
the second pass over the data, checkpoint, tools/test.py with IoUMetric,
--show-dir and --out, the mmseg inference APIs with a colour-overlay
visualisation, and the missing-dataset error."""
import glob
import os.path as osp
import re

import numpy as np
import pytest
from PIL import Image

from ..helpers import REPO, load_tool, own_loader_options, run_tool

CONFIGS = {
    'deeplabv3': 'deeplabv3/deeplabv3_mobilemamba-b4_80k_ade20k-512x512.py',
    'pspnet': 'pspnet/pspnet_mobilemamba-b4_80k_ade20k-512x512.py',
    'fpn': 'sem-fpn/sem-fpn_mobilemamba-b4_160k_ade20k-512x512.py',
}
# 8 training scenes at batch 2: the 5th iteration is the first of the
# second pass over the data
ITERS = 5
CROP = 128
# One OpenMP thread per tool process: on a busy 2-core machine, two threads
# that spin-wait for each other made a training step 30x slower (measured:
# ~60 s vs ~2 s per iteration at load 12), and these tiny inputs gain little
# from a second thread anyway.
ENV = {'OMP_NUM_THREADS': '1'}


def _config(name):
    return osp.join(REPO, 'configs', CONFIGS[name])


def _data_options(name, root):
    """``k=v`` strings pointing a config at ``root`` with small images."""
    from mmengine.config import Config

    ade20k_cfg_options = load_tool(
        'dataset_converters/make_ade20k.py').ade20k_cfg_options
    cfg = Config.fromfile(_config(name), import_custom_modules=False)
    opts = ade20k_cfg_options(cfg, root, crop_size=CROP, num_workers=0)
    # no pretrained weights exist here: train from scratch
    opts['model.backbone.init_cfg'] = None
    return [f'{k}={v}'.replace(' ', '') for k, v in opts.items()]


def _miou(out):
    match = re.findall(r'mIoU: ([\d.]+)', out)
    assert match, out[-3000:]
    return float(match[-1])


@pytest.fixture(scope='module', params=sorted(CONFIGS))
def trained(request, tiny_ade20k, tmp_path_factory):
    """(name, checkpoint, training log) after a few iterations."""
    name = request.param
    work = str(tmp_path_factory.mktemp(f'seg_{name}'))
    # the configs' own loader (4 workers lowered to 2): with persistent
    # workers the resumable loop once ended its InfiniteSampler at once
    loader = own_loader_options(_config(name))
    assert 'train_dataloader.persistent_workers=True' in loader
    out = run_tool(
        'tools/train.py', _config(name), '--work-dir', work, '--cfg-options',
        *_data_options(name, tiny_ade20k), *loader,
        'train_dataloader.batch_size=2',
        f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}',
        f'default_hooks.checkpoint.interval={ITERS}',
        'default_hooks.logger.interval=1', env=ENV)
    return name, osp.join(work, f'iter_{ITERS}.pth'), out


@pytest.mark.slow
def test_train_checkpoint_and_validate(trained):
    name, ckpt, out = trained
    assert osp.isfile(ckpt)
    # one CPU process: the configs' SyncBN was converted, with a warning
    assert 'SyncBN layer config(s) replaced by BN' in out
    losses = [float(v) for v in re.findall(r' loss: ([\d.]+)', out)]
    assert len(losses) == ITERS and all(np.isfinite(losses)), out[-3000:]
    # an InfiniteSampler never ends: mmengine never restarts the loader
    assert 'Reach the end of the dataloader' not in out
    if name != 'fpn':
        assert 'aux.loss_ce' in out  # the auxiliary head trains too
    assert 0.0 <= _miou(out) <= 100.0  # IoUMetric ran on the val split


@pytest.mark.slow
def test_tools_test_metric_show_dir_and_out(trained, tiny_ade20k, tmp_path):
    name, ckpt, _ = trained
    show, dump = str(tmp_path / 'show'), str(tmp_path / 'preds')
    out = run_tool('tools/test.py', _config(name), ckpt, '--work-dir',
                   str(tmp_path / 'work'), '--show-dir', show, '--out', dump,
                   '--cfg-options', *_data_options(name, tiny_ade20k),
                   env=ENV)
    assert 0.0 <= _miou(out) <= 100.0
    val_imgs = sorted(glob.glob(osp.join(tiny_ade20k, 'images', 'validation',
                                         '*.jpg')))
    vis = glob.glob(osp.join(show, '**', '*.png'), recursive=True)
    assert len(vis) == len(val_imgs), vis
    # prediction PNGs at the original image size, in ADE20K's own indexing
    # (1..150, as the annotations; IoUMetric undoes reduce_zero_label)
    preds = sorted(glob.glob(osp.join(dump, '*.png')))
    assert len(preds) == len(val_imgs)
    for img_path, pred_path in zip(val_imgs, preds):
        pred = np.asarray(Image.open(pred_path))
        assert pred.shape == Image.open(img_path).size[::-1]
        assert 1 <= pred.min() and pred.max() <= 150


@pytest.mark.slow
def test_inference_apis_write_overlays(trained, tiny_ade20k, tmp_path):
    import mmmobilemamba  # noqa: F401  (registers MobileMamba in mmseg)
    from mmseg.apis import (MMSegInferencer, inference_model, init_model,
                            show_result_pyplot)
    name, ckpt, _ = trained
    img_path = osp.join(tiny_ade20k, 'images', 'validation',
                        'ADE_val_00000001.jpg')
    img = np.asarray(Image.open(img_path))
    h, w = img.shape[:2]
    assert h % 64 and w % 64  # the generator's sizes are no multiples of 64

    model = init_model(_config(name), ckpt, device='cpu')
    result = inference_model(model, img_path)
    assert tuple(result.pred_sem_seg.data.shape) == (1, h, w)
    overlay = str(tmp_path / 'overlay.png')
    drawn = show_result_pyplot(model, img_path, result, show=False,
                               draw_gt=False, out_file=overlay)
    assert osp.isfile(overlay) and drawn.shape == (h, w, 3)
    # a colour overlay: the image is changed where a class is painted
    assert np.abs(drawn.astype(int) - img[..., ::-1].astype(int)).mean() > 1

    inferencer = MMSegInferencer(model=_config(name), weights=ckpt,
                                 device='cpu')
    # an array of another odd size (BGR, as mmcv reads images)
    odd = np.ascontiguousarray(img[:h - 17, :w - 9, ::-1])
    out_dir = str(tmp_path / 'inferencer')
    res = inferencer(odd, out_dir=out_dir, return_datasamples=True)
    assert tuple(res.pred_sem_seg.data.shape) == (1, h - 17, w - 9)
    files = glob.glob(osp.join(out_dir, 'vis', '*'))
    assert len(files) == 1
    assert Image.open(files[0]).size == (w - 9, h - 17)


def test_missing_dataset_names_path_and_generator(tmp_path):
    missing = str(tmp_path / 'no_ade' / 'ADEChallengeData2016')
    opts = [f'{s}_dataloader.dataset.data_root={missing}'
            for s in ('train', 'val', 'test')]
    code, out = run_tool('tools/train.py', _config('fpn'), '--work-dir',
                         str(tmp_path / 'w'), '--cfg-options', *opts,
                         env=ENV, check=False)
    assert code != 0
    assert 'dataset not found' in out and missing in out
    assert f'python tools/dataset_converters/make_ade20k.py {missing}' in out
