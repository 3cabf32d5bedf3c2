"""tools/train.py and tools/test.py as a user runs them: train, checkpoint,
resume, test, and the errors a user meets with bad input."""
import glob
import os.path as osp
import re

import pytest

from ..helpers import REPO, data_root_options, run_tool

STOCK = osp.join(REPO, 'tests', 'data', 'configs',
                 'stock_resnet_tiny_folder.py')



@pytest.mark.slow
def test_train_resume_test_stock_model(tiny_imagenet_folder, tmp_path):
    work = str(tmp_path / 'work')
    run_tool('tools/train.py', STOCK, '--work-dir', work, '--cfg-options',
             'train_cfg.max_epochs=1', *data_root_options(tiny_imagenet_folder))
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))

    # resume from the latest checkpoint and train one more epoch
    out = run_tool('tools/train.py', STOCK, '--work-dir', work, '--resume',
                   '--cfg-options', 'train_cfg.max_epochs=2',
                   *data_root_options(tiny_imagenet_folder))
    assert 'resumed epoch: 1' in out, out[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))

    dump = str(tmp_path / 'preds.pkl')
    out = run_tool('tools/test.py', STOCK, osp.join(work, 'epoch_2.pth'),
                   '--work-dir', str(tmp_path / 'test'), '--out', dump,
                   '--cfg-options', *data_root_options(tiny_imagenet_folder))
    match = re.search(r'accuracy/top1: ([\d.]+)', out)
    assert match, out[-3000:]
    assert 0.0 <= float(match.group(1)) <= 100.0
    assert osp.getsize(dump) > 0


def test_missing_dataset_fails_before_training(tmp_path):
    missing = str(tmp_path / 'no_such_data')
    code, out = run_tool('tools/train.py', STOCK, '--work-dir',
                         str(tmp_path / 'w'), '--cfg-options',
                         *data_root_options(missing), check=False)
    assert code != 0
    assert 'dataset not found' in out and missing in out
    assert 'make_imagenet_folder.py' in out  # how to generate one
    assert not glob.glob(str(tmp_path / 'w' / '*' / 'vis_data'))


def test_wrong_checkpoint_is_an_error(tiny_imagenet_folder, tmp_path):
    import torch
    bad = str(tmp_path / 'bad.pth')
    torch.save({'state_dict': {'something.else': torch.zeros(1)}}, bad)
    code, out = run_tool('tools/test.py', STOCK, bad, '--work-dir',
                         str(tmp_path / 'w'), '--cfg-options',
                         *data_root_options(tiny_imagenet_folder), check=False)
    assert code != 0
    assert 'does not match the model' in out and 'unexpected' in out


def test_missing_config_and_checkpoint_are_named(tmp_path):
    code, out = run_tool('tools/train.py', str(tmp_path / 'nope.py'),
                         check=False)
    assert code != 0 and 'nope.py does not exist' in out
    code, out = run_tool('tools/test.py', STOCK, str(tmp_path / 'x.pth'),
                         check=False)
    assert code != 0 and 'x.pth not found' in out
