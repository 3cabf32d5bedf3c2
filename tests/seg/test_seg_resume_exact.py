"""An iteration-based segmentation run (Semantic FPN, MobileMamba-B4)
killed with SIGKILL between checkpoints and restarted with `tools/train.py
--resume` ends with exactly the weights of the uninterrupted run: without
dataloader workers, and with the config's own InfiniteSampler and
persistent workers (two here).

8 generated ADE20K scenes, 128 px crops, batch 2: 6 iterations (the last
two from the second pass over the data), a checkpoint every 2, killed
after iteration 3."""
import os.path as osp
import signal

import pytest

from ..helpers import (REPO, assert_same_weights, last_checkpoint,
                       own_loader_options, train)
from .test_seg_e2e import ENV, _data_options

pytest.importorskip('mmseg')

CONFIG = osp.join(REPO, 'tests', 'data', 'configs', 'fpn_tiny_resume.py')


@pytest.fixture(scope='module')
def opts(tiny_ade20k):
    """Options without dataloader workers."""
    return _data_options('fpn', tiny_ade20k) + [
        'train_dataloader.batch_size=2', 'train_cfg.max_iters=6',
        'train_cfg.val_interval=100', 'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1']


def _kill_then_resume(reference, work, opts):
    """Run uninterrupted in ``reference``; in ``work`` kill after iteration
    3 and resume from iteration 2's checkpoint: the two logs."""
    out = train(CONFIG, reference, opts, env=ENV)
    code, killed = train(CONFIG, work,
                         opts + ['custom_hooks.0.after_iter=3'],
                         check=False, env=ENV)
    assert code == -signal.SIGKILL, killed[-3000:]
    assert last_checkpoint(work) == osp.join(work, 'iter_2.pth')

    resumed = train(CONFIG, work, opts, '--resume', env=ENV)
    assert 'resumed epoch: 0, iter: 2' in resumed, resumed[-3000:]
    assert 'Iter(train) [6/6]' in resumed
    assert_same_weights(osp.join(reference, 'iter_6.pth'),
                        osp.join(work, 'iter_6.pth'))
    return out, resumed


@pytest.mark.slow
def test_kill_then_resume_matches_uninterrupted_run(opts, tmp_path):
    _kill_then_resume(str(tmp_path / 'uninterrupted'),
                      str(tmp_path / 'killed'), opts)


@pytest.mark.slow
def test_kill_then_resume_with_persistent_workers(opts, tmp_path):
    loader = own_loader_options(CONFIG)
    assert loader == ['train_dataloader.num_workers=2',
                      'train_dataloader.persistent_workers=True']
    # The reference has the workers too: torch draws from the global
    # generator once per dataloader iterator made, persistent workers make
    # fewer, and the heads' dropout draws from it. (The batches themselves
    # are the same with or without workers: tests/engine.)
    logs = _kill_then_resume(str(tmp_path / 'uninterrupted'),
                             str(tmp_path / 'killed'), opts + loader)
    # the InfiniteSampler never ended, also across the resume's replay
    assert not any('Reach the end of the dataloader' in log for log in logs)
