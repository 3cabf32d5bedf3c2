"""The classification configs as a user runs them, at toy scale: build a
small real-image dataset, train T2 with and without distillation, resume,
test, and load the distilled checkpoint into the plain config for testing
and inference."""
import glob
import os.path as osp
import re

import pytest
import torch

from ..helpers import REPO, run_tool

pytest.importorskip('mmpretrain')

PLAIN = osp.join(REPO, 'configs', 'mobilemamba',
                 'mobilemamba-t2_8xb128_in1k.py')
KD = osp.join(REPO, 'configs', 'mobilemamba',
              'mobilemamba-t2_8xb128_kd-1000e_in1k.py')
# a stock mmpretrain ResNet (narrow ResNet-18, 10 classes) as the teacher
TEACHER = osp.join(REPO, 'tests', 'data', 'configs',
                   'stock_resnet_tiny_folder.py')
SIZE = 32


def _opts(root, max_epochs):
    """--cfg-options that point a 1000-class ImageNet config at a toy
    10-class folder of SIZE px images, one process, 8 images a batch."""
    opts = [
        'model.head.num_classes=10', 'data_preprocessor.num_classes=10',
        f'train_cfg.max_epochs={max_epochs}',
        # warm-up 1 epoch, then the cosine to the end (so max_epochs >= 2)
        'param_scheduler.0.end=1', 'param_scheduler.1.begin=1',
        'default_hooks.logger.interval=1',
        # the recipe's crop sizes, by list index in the pipelines
        f'train_dataloader.dataset.pipeline.1.transforms.0.0.scale={SIZE}',
        f'train_dataloader.dataset.pipeline.1.transforms.1.0.scale={SIZE}',
    ]
    for split in ('train', 'val', 'test'):
        opts += [f'{split}_dataloader.dataset.data_root={root}',
                 f'{split}_dataloader.batch_size=8',
                 f'{split}_dataloader.num_workers=0',
                 f'{split}_dataloader.persistent_workers=False']
    for split in ('val', 'test'):
        opts += [f'{split}_dataloader.dataset.pipeline.1.scale={SIZE + 4}',
                 f'{split}_dataloader.dataset.pipeline.2.crop_size={SIZE}']
    return opts


@pytest.fixture(scope='module')
def digits_root(tmp_path_factory):
    pytest.importorskip('sklearn')
    root = str(tmp_path_factory.mktemp('digits'))
    out = run_tool('tools/dataset_converters/make_imagenet_folder.py', root,
                   '--source', 'digits', '--size', str(SIZE),
                   '--train-per-class', '4', '--val-per-class', '2')
    assert 'wrote 40 train and 20 val images' in out
    return root


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory):
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(TEACHER)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    path = str(tmp_path_factory.mktemp('teacher') / 'teacher.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def _top1(out):
    match = re.search(r'accuracy/top1: ([\d.]+)', out)
    assert match, out[-3000:]
    return float(match.group(1))


@pytest.mark.slow
def test_train_resume_test_plain_config(digits_root, tmp_path):
    work = str(tmp_path / 'work')
    out = run_tool('tools/train.py', PLAIN, '--work-dir', work,
                   '--auto-scale-lr', '--cfg-options', *_opts(digits_root, 2))
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))
    assert 'AmpOptimWrapper' in out or torch.cuda.is_available()
    # 40 images / 8 = 5 iterations; --auto-scale-lr: lr * 8 / 1024
    assert 'Scaling the original LR by 0.0078125' in out, out[-3000:]
    assert 'loss_kd' not in out

    out = run_tool('tools/train.py', PLAIN, '--work-dir', work, '--resume',
                   '--cfg-options', *_opts(digits_root, 3))
    assert 'resumed epoch: 2' in out, out[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_3.pth'))

    out = run_tool('tools/test.py', PLAIN, osp.join(work, 'epoch_3.pth'),
                   '--work-dir', str(tmp_path / 'test'), '--cfg-options',
                   *_opts(digits_root, 3))
    assert 0.0 <= _top1(out) <= 100.0


@pytest.mark.slow
def test_distillation_run_and_its_checkpoint(digits_root, teacher_ckpt,
                                             tmp_path):
    work = str(tmp_path / 'kd')
    teacher = [f'model.teacher.config={TEACHER}',
               f'model.teacher.checkpoint={teacher_ckpt}']
    out = run_tool('tools/train.py', KD, '--work-dir', work,
                   '--cfg-options', *_opts(digits_root, 2), *teacher)
    # mmengine logs the total as `loss`, then its two terms
    logged = re.findall(
        r'loss: ([\d.]+)\s+loss_cls: ([\d.]+)\s+loss_kd: ([\d.]+)', out)
    assert logged, out[-3000:]
    for total, cls, kd in logged:
        assert float(kd) >= 0
        assert float(total) == pytest.approx(float(cls) + float(kd),
                                             abs=2e-4)

    out = run_tool('tools/train.py', KD, '--work-dir', work, '--resume',
                   '--cfg-options', *_opts(digits_root, 3), *teacher)
    assert 'resumed epoch: 2' in out, out[-3000:]
    ckpt = osp.join(work, 'epoch_3.pth')
    state = torch.load(ckpt, map_location='cpu',
                       weights_only=False)['state_dict']
    assert state and all(k.startswith(('backbone.', 'head.')) for k in state)

    # the distilled student tests with the plain config (tools/test.py
    # refuses a checkpoint whose keys do not match the model)
    out = run_tool('tools/test.py', PLAIN, ckpt, '--work-dir',
                   str(tmp_path / 'test'), '--cfg-options',
                   *_opts(digits_root, 3))
    assert 0.0 <= _top1(out) <= 100.0

    # and serves through mmpretrain's API
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config
    from mmpretrain import ImageClassificationInferencer, get_model
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(PLAIN)
    cfg.model.head.num_classes = 10
    image = sorted(glob.glob(osp.join(digits_root, 'val', '*', '*.JPEG')))[0]
    # pipelines are built in the current default scope, which other tests
    # (e.g. mmdet's inference API) may have left behind
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = get_model(cfg, pretrained=ckpt, device='cpu')
        result = ImageClassificationInferencer(
            model=cfg, pretrained=ckpt, device='cpu')(image)[0]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert 0 <= result['pred_label'] < 10
    assert len(result['pred_scores']) == 10


def test_missing_teacher_checkpoint_stops_before_training(digits_root,
                                                          tmp_path):
    missing = str(tmp_path / 'no_teacher.pth')
    code, out = run_tool('tools/train.py', KD, '--work-dir',
                         str(tmp_path / 'w'), '--cfg-options',
                         *_opts(digits_root, 2),
                         f'model.teacher.config={TEACHER}',
                         f'model.teacher.checkpoint={missing}', check=False)
    assert code != 0
    assert 'teacher checkpoint' in out and missing in out
    assert 'Epoch(train)' not in out
