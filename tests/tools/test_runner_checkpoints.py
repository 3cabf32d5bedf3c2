"""Real Runner checkpoints of a classification, a detection and a
segmentation config load without trust: they need no global beyond torch's
weights-only defaults (the message hub is stored plain), and they resume and
test with the tools. The resumed file carries a payload in the config text
mmengine's resume executes (meta['config'], meta['cfg']): it must not run.
Detection also builds DetInferencer from the checkpoint alone (its config
text, rendered as data). Segmentation also checks that a test run that fails
half-way leaves no --out folder behind."""
import glob
import os
import os.path as osp
import shutil

import pytest

from ..helpers import REPO, load_tool, run_tool

ENV = {'OMP_NUM_THREADS': '1', 'MMMOBILEMAMBA_TRUST_CHECKPOINTS': ''}


def _cls_task(tiny_imagenet_folder, _):
    opts = ['model.head.num_classes=10', 'data_preprocessor.num_classes=10',
            'param_scheduler.0.end=1', 'param_scheduler.1.begin=1',
            # the cosine needs an end past its begin in the 1-epoch run
            'param_scheduler.1.end=2',
            'train_dataloader.dataset.pipeline.1.transforms.0.0.scale=32',
            'train_dataloader.dataset.pipeline.1.transforms.1.0.scale=32',
            'val_dataloader.dataset.pipeline.1.scale=36',
            'val_dataloader.dataset.pipeline.2.crop_size=32',
            'test_dataloader.dataset.pipeline.1.scale=36',
            'test_dataloader.dataset.pipeline.2.crop_size=32']
    for split in ('train', 'val', 'test'):
        root = tiny_imagenet_folder
        opts += [f'{split}_dataloader.dataset.data_root={root}',
                 f'{split}_dataloader.batch_size=40',
                 f'{split}_dataloader.num_workers=0',
                 f'{split}_dataloader.persistent_workers=False']
    return ('configs/mobilemamba/mobilemamba-t2_8xb128_in1k.py', opts,
            'epoch', 'accuracy/top1')


def _det_task(_, tiny_coco):
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config

    coco_cfg_options = load_tool(
        'dataset_converters/make_coco.py').coco_cfg_options
    config = 'configs/retinanet/retinanet_mobilemamba-b1_fpn_1x_coco.py'
    opts = coco_cfg_options(Config.fromfile(osp.join(REPO, config)),
                            tiny_coco, (192, 128), num_workers=0)
    opts.update({'model.backbone.init_cfg': None,
                 'model.test_cfg.score_thr': 0.0,
                 'train_cfg.val_interval': 100})
    opts = [f'{k}={v}'.replace(' ', '') for k, v in opts.items()]
    return config, opts, 'epoch', 'coco/bbox_mAP'


def _seg_task(_, tiny_ade20k):
    from mmengine.config import Config

    ade20k_cfg_options = load_tool(
        'dataset_converters/make_ade20k.py').ade20k_cfg_options
    config = 'configs/sem-fpn/sem-fpn_mobilemamba-b4_160k_ade20k-512x512.py'
    cfg = Config.fromfile(osp.join(REPO, config), import_custom_modules=False)
    opts = ade20k_cfg_options(cfg, tiny_ade20k, crop_size=128, num_workers=0)
    opts['model.backbone.init_cfg'] = None
    opts = [f'{k}={v}'.replace(' ', '') for k, v in opts.items()]
    opts += ['train_dataloader.batch_size=2', 'train_cfg.val_interval=100',
             'default_hooks.checkpoint.interval=1']
    return config, opts, 'iter', 'mIoU'


TASKS = {'cls': _cls_task, 'det': _det_task, 'seg': _seg_task}


def _length(unit, n):
    return (f'train_cfg.max_epochs={n}' if unit == 'epoch' else
            f'train_cfg.max_iters={n}')


@pytest.mark.slow
@pytest.mark.parametrize('task', sorted(TASKS))
def test_runner_checkpoint_resumes_and_tests_without_trust(
        task, request, tmp_path):
    pytest.importorskip({'cls': 'mmpretrain', 'det': 'mmdet',
                         'seg': 'mmseg'}[task])
    import torch

    folder = request.getfixturevalue('tiny_imagenet_folder') \
        if task == 'cls' else None
    coco = request.getfixturevalue('tiny_coco') if task == 'det' else None
    ade = request.getfixturevalue('tiny_ade20k') if task == 'seg' else None
    config, opts, unit, metric = TASKS[task](folder, coco or ade)
    work = str(tmp_path / 'work')
    run_tool('tools/train.py', config, '--work-dir', work, '--cfg-options',
             *opts, _length(unit, 1), env=ENV)
    first = osp.join(work, f'{unit}_1.pth')
    assert torch.serialization.get_unsafe_globals_in_checkpoint(first) == []

    marker = str(tmp_path / 'PAYLOAD_RAN')
    evil = torch.load(first, weights_only=True)
    payload = f"gpu_ids = [0]\n_x = __import__('os').makedirs({marker!r})\n"
    evil['meta'].update(config=payload, cfg=evil['meta']['cfg'] + payload)
    torch.save(evil, first)
    out = run_tool('tools/train.py', config, '--work-dir', work, '--resume',
                   first, '--cfg-options', *opts, _length(unit, 2), env=ENV)
    resumed = 'resumed epoch: 1,' if unit == 'epoch' else 'iter: 1\n'
    assert resumed in out, out[-3000:]
    assert not osp.exists(marker)
    assert 'call to __import__' in out, out[-3000:]
    last = osp.join(work, f'{unit}_2.pth')
    assert osp.isfile(last)

    out = run_tool('tools/test.py', config, last, '--work-dir',
                   str(tmp_path / 'test'), '--cfg-options', *opts, env=ENV)
    assert metric in out, out[-3000:]

    if task == 'seg':
        _seg_failure_leaves_no_out_folder(config, last, opts, ade, tmp_path)
    if task == 'det':
        _inferencer_from_checkpoint_alone(last, coco)


def _inferencer_from_checkpoint_alone(ckpt, coco):
    """A stock use: DetInferencer(model=None, weights=CKPT) builds the model
    from the config text in the checkpoint (rendered as data by the
    loader) and predicts."""
    image = sorted(glob.glob(osp.join(coco, '**', '*.jpg'),
                             recursive=True))[0]
    out = run_tool('-c', (
        'import mmmobilemamba\n'
        'from mmdet.apis import DetInferencer\n'
        f'inferencer = DetInferencer(model=None, weights={ckpt!r}, '
        "device='cpu')\n"
        f'result = inferencer({image!r})\n'
        "print('PREDICTIONS', len(result['predictions']))"), env=ENV)
    assert 'PREDICTIONS 1' in out, out[-3000:]


def _seg_failure_leaves_no_out_folder(config, ckpt, opts, ade, tmp_path):
    """Prediction PNGs are written image by image: a failure at the last
    image must not leave the first ones under the --out name."""
    root = str(tmp_path / 'ade_broken')
    shutil.copytree(ade, root)
    victim = sorted(glob.glob(osp.join(root, 'images', 'validation',
                                       '*.jpg')))[-1]
    with open(victim, 'r+b') as f:
        f.truncate(os.path.getsize(victim) // 2)
    opts = [o.replace(ade, root) for o in opts] + [
        'test_dataloader.batch_size=1']
    dump = str(tmp_path / 'preds')
    code, out = run_tool('tools/test.py', config, ckpt, '--work-dir',
                         str(tmp_path / 'test2'), '--out', dump,
                         '--cfg-options', *opts, env=ENV, check=False)
    assert code != 0 and f'cannot read image {victim}' in out, out[-3000:]
    assert not osp.exists(dump)
    assert not glob.glob(str(tmp_path / '.preds*'))


STOCK_RUN = '''
import sys
import mmmobilemamba
from mmengine.config import Config
from mmengine.runner import Runner
config, root, work, epochs, resume, full = sys.argv[1:7]
if full == 'full':  # the reference: numpy and HistoryBuffer unpickled
    import torch
    from mmengine.runner import CheckpointLoader
    CheckpointLoader.register_scheme(
        prefixes='', force=True, loader=lambda f, map_location=None: torch.load(
            f, map_location=map_location, weights_only=False))
cfg = Config.fromfile(config)
for split in ('train', 'val', 'test'):
    cfg[f'{split}_dataloader'].dataset.data_root = root
cfg.work_dir = work
cfg.train_cfg.max_epochs = int(epochs)
if resume != '-':
    cfg.resume, cfg.load_from = True, resume
Runner.from_cfg(cfg).train()
'''


@pytest.mark.slow
def test_stock_runner_checkpoint_resumes_as_when_unpickled_in_full(
        tiny_imagenet_folder, tmp_path):
    """A checkpoint written by a stock mmengine Runner (HistoryBuffers and
    numpy values in its message hub, no project hook) resumes through the
    checked stand-ins to exactly the weights of a resume that unpickles it
    in full (torch.load(weights_only=False): the same objects as the
    allowlist of real numpy globals that loading used before)."""
    from ..helpers import assert_same_weights
    config = osp.join(REPO, 'tests', 'data', 'configs',
                      'stock_resnet_tiny_folder.py')
    first = str(tmp_path / 'first')
    run_tool('-c', STOCK_RUN, config, tiny_imagenet_folder, first, '1', '-',
             '-', env=ENV)
    ckpt = osp.join(first, 'epoch_1.pth')
    import torch
    needed = torch.serialization.get_unsafe_globals_in_checkpoint(ckpt)
    assert any('HistoryBuffer' in n for n in needed), needed  # stock form
    runs = {}
    for name in ('checked', 'full'):
        work = str(tmp_path / name)
        out = run_tool('-c', STOCK_RUN, config, tiny_imagenet_folder, work,
                       '2', ckpt, name, env=ENV)
        assert 'resumed epoch: 1' in out, out[-3000:]
        runs[name] = osp.join(work, 'epoch_2.pth')
    assert_same_weights(runs['checked'], runs['full'])
    # the resumed message hub carried the first epoch's history over alike
    from ..helpers import load
    hubs = [load(runs[k])['message_hub']['log_scalars'] for k in runs]
    for key in ('train/loss', 'train/lr'):
        (log_a, count_a), (log_b, count_b) = (h[key].data for h in hubs)
        assert len(log_a) == 16 and (log_a == log_b).all() and \
            (count_a == count_b).all(), key
