"""Bad input stops with an error that names the file (or iteration) and what
to do, and leaves no output that looks complete: a truncated image or label
map, a COCO annotation file that is not JSON, a loss that becomes NaN.
(Truncated checkpoints: tests/tools/test_checkpoint_tools.py.)"""
import glob
import os
import os.path as osp
import shutil

import pytest
import torch

from ..helpers import REPO, data_root_options, load_tool, run_tool

STOCK = osp.join(REPO, 'tests', 'data', 'configs',
                 'stock_resnet_tiny_folder.py')


def _truncate(path, keep=0.5):
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])


@pytest.mark.parametrize('keep', [0.0, 0.5, 0.95])
def test_truncated_image_is_named_by_the_pipeline(tmp_path, keep):
    pytest.importorskip('mmcv')
    import numpy as np
    from mmcv.transforms import TRANSFORMS
    from PIL import Image

    import mmmobilemamba  # noqa: F401
    from mmmobilemamba.utils.input_checks import BadInputFileError
    path = str(tmp_path / 'img.jpg')
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(path)
    load = TRANSFORMS.build(dict(type='LoadImageFromFile'))
    assert load(dict(img_path=path))['img'].shape == (40, 40, 3)
    _truncate(path, keep)
    with pytest.raises(BadInputFileError, match=f'cannot read image {path} '
                       r'.*truncated.*Replace it'):
        load(dict(img_path=path))


def test_truncated_label_map_is_named(tmp_path):
    pytest.importorskip('mmseg')
    import numpy as np
    from PIL import Image

    import mmmobilemamba  # noqa: F401
    from mmseg.registry import TRANSFORMS

    from mmmobilemamba.utils.input_checks import BadInputFileError
    path = str(tmp_path / 'label.png')
    Image.fromarray(np.arange(1600, dtype=np.uint8).reshape(40, 40)).save(
        path)
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmseg'):
        load = TRANSFORMS.build(dict(type='LoadAnnotations'))
    results = dict(seg_map_path=path, reduce_zero_label=False,
                   seg_fields=[])
    assert load(dict(results))['gt_seg_map'].shape == (40, 40)
    _truncate(path)
    with pytest.raises(BadInputFileError,
                       match=f'segmentation label map {path}'):
        load(dict(results))


@pytest.fixture
def broken_folder(tiny_imagenet_folder, tmp_path):
    """A copy of the tiny image folder with one truncated val image."""
    root = str(tmp_path / 'data')
    shutil.copytree(tiny_imagenet_folder, root)
    victim = sorted(glob.glob(osp.join(root, 'val', '*', '*')))[5]
    _truncate(victim)
    return root, victim


def test_test_tool_names_a_truncated_image_and_writes_no_results(
        broken_folder, tmp_path):
    pytest.importorskip('mmpretrain')
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    root, victim = broken_folder
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(STOCK).model)
    ckpt = str(tmp_path / 'model.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    dump = str(tmp_path / 'out' / 'preds.pkl')
    os.makedirs(osp.dirname(dump))
    code, out = run_tool('tools/test.py', STOCK, ckpt, '--work-dir',
                         str(tmp_path / 'w'), '--out', dump,
                         '--cfg-options', 'test_dataloader.batch_size=2',
                         *data_root_options(root), check=False)
    assert code != 0
    assert f'cannot read image {victim}' in out, out[-3000:]
    assert 'Replace it with an intact copy' in out
    assert os.listdir(osp.dirname(dump)) == []  # no result, no temporary


def test_invalid_coco_json_is_named(tmp_path):
    pytest.importorskip('mmdet')
    import mmmobilemamba  # noqa: F401
    from mmdet.registry import DATASETS

    make_coco = load_tool('dataset_converters/make_coco.py').make_coco
    from mmmobilemamba.utils.input_checks import BadInputFileError
    root = str(tmp_path / 'coco')
    make_coco(root, num_train=1, num_val=1, size_range=(64, 80),
              max_objects=1, seed=0)
    ann = osp.join(root, 'annotations', 'instances_val2017.json')
    _truncate(ann, 0.6)
    from mmengine.registry import DefaultScope
    with pytest.raises(BadInputFileError, match=f'{ann} .*is not valid JSON'
                       '.*truncated'), \
            DefaultScope.overwrite_default_scope('mmdet'):
        DATASETS.build(dict(type='CocoDataset', data_root=root,
                            ann_file='annotations/instances_val2017.json',
                            data_prefix=dict(img='val2017/'), pipeline=[]))
    # the train tool stops with it before training
    code, out = run_tool(
        'tools/train.py', osp.join(REPO, 'configs', 'retinanet',
                                   'retinanet_mobilemamba-b1_fpn_1x_coco.py'),
        '--work-dir', str(tmp_path / 'w'), '--cfg-options',
        f'train_dataloader.dataset.data_root={root}',
        'train_dataloader.dataset.ann_file=annotations/'
        'instances_val2017.json',
        'train_dataloader.dataset.data_prefix.img=val2017/',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'model.backbone.init_cfg=None', check=False)
    assert code != 0
    assert f'{ann}' in out and 'is not valid JSON' in out, out[-3000:]
    assert 'JSONDecodeError.__init__' not in out


class _FakeRunner:
    iter, epoch, work_dir = 6, 1, '/work/dir'

    class train_loop:
        max_epochs = 3


def test_finite_loss_hook_names_the_iteration():
    from mmmobilemamba.utils.loss_check import (FiniteLossHook,
                                                NonFiniteLossError)
    hook = FiniteLossHook()
    hook.after_train_iter(_FakeRunner(), 2, outputs=dict(
        loss=torch.tensor(1.5), acc=torch.tensor(50.)))
    with pytest.raises(NonFiniteLossError,
                       match=r'iteration 7 \(epoch 2, batch 3 of the epoch\)'
                       r': loss=nan, loss_cls=nan.*lower the learning rate'):
        hook.after_train_iter(_FakeRunner(), 2, outputs=dict(
            loss=torch.tensor(float('nan')),
            loss_cls=torch.tensor(float('nan')),
            loss_bbox=torch.tensor(0.3)))


def test_nan_loss_stops_training_before_a_checkpoint(tiny_imagenet_folder,
                                                     tmp_path):
    pytest.importorskip('mmpretrain')
    work = str(tmp_path / 'w')
    code, out = run_tool('tools/train.py', STOCK, '--work-dir', work,
                         '--cfg-options', 'train_cfg.max_epochs=1',
                         'model.head.loss.loss_weight=nan',
                         *data_root_options(tiny_imagenet_folder), check=False)
    assert code != 0
    assert 'NonFiniteLossError' in out and 'iteration 1 (epoch 1' in out, \
        out[-3000:]
    assert 'clip gradients' in out
    assert not glob.glob(osp.join(work, '*.pth'))
