"""A RetinaNet (MobileMamba-B1) run killed with SIGKILL in the middle of
epoch 2 and restarted with `tools/train.py --resume` ends with exactly the
weights of the same run left uninterrupted; two uninterrupted runs agree,
also when one has the config's own dataloader workers (2, persistent).

4 generated COCO images at 192x128, batch 2: 2 iterations an epoch, 3
epochs, a checkpoint after every iteration."""
import os.path as osp
import signal

import pytest

from ..helpers import (REPO, assert_same_weights, last_checkpoint, load,
                       own_loader_options, train)
from .test_det_e2e import as_cli, options

pytest.importorskip('mmdet')

CONFIG = osp.join(REPO, 'tests', 'data', 'configs',
                  'retinanet_tiny_resume.py')


@pytest.fixture(scope='module')
def opts(tiny_coco):
    o = options('retinanet', tiny_coco)
    o.update({
        'train_cfg.max_epochs': 3,
        'train_cfg.val_interval': 1,
        'default_hooks.checkpoint.resume_interval': 1,
    })
    return as_cli(o)


@pytest.fixture(scope='module')
def reference(opts, tmp_path_factory):
    work = str(tmp_path_factory.mktemp('det_uninterrupted'))
    train(CONFIG, work, opts)
    return osp.join(work, 'epoch_3.pth')


@pytest.mark.slow
def test_two_uninterrupted_runs_are_identical(opts, reference, tmp_path):
    work = str(tmp_path / 'again')
    train(CONFIG, work, opts)
    assert_same_weights(reference, osp.join(work, 'epoch_3.pth'))


@pytest.mark.slow
def test_the_configs_persistent_workers_load_the_same_data(opts, reference,
                                                           tmp_path):
    # epochs 2 and 3 reuse the persistent workers of epoch 1
    loader = own_loader_options(CONFIG)
    assert loader == ['train_dataloader.num_workers=2',
                      'train_dataloader.persistent_workers=True']
    work = str(tmp_path / 'with_workers')
    out = train(CONFIG, work, opts + loader)
    assert 'Epoch(train) [3][2/2]' in out
    # RetinaNet's training step draws nothing from the global generators
    # (torch draws from them once per dataloader iterator made, and
    # persistent workers make fewer), so only the data could tell the runs
    # apart
    assert_same_weights(reference, osp.join(work, 'epoch_3.pth'))


@pytest.mark.slow
def test_kill_in_the_middle_of_epoch_2_then_resume(opts, reference,
                                                   tmp_path):
    work = str(tmp_path / 'killed')
    # iteration 3 = batch 1 of epoch 2, saved; killed after it
    code, out = train(CONFIG, work, opts + ['custom_hooks.0.after_iter=3'],
                      check=False)
    assert code == -signal.SIGKILL, out[-3000:]
    assert last_checkpoint(work) == osp.join(work, 'resume_iter_3.pth')
    state = load(last_checkpoint(work))['resume_state']
    assert (state['epoch'], state['batch']) == (1, 1)

    out = train(CONFIG, work, opts, '--resume')
    assert 'resumed epoch: 1, iter: 3' in out, out[-3000:]
    assert 'Epoch(train) [2][2/2]' in out
    assert 'Epoch(train) [2][1/2]' not in out
    assert_same_weights(reference, osp.join(work, 'epoch_3.pth'))
