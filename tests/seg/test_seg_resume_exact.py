"""An iteration-based segmentation run (Semantic FPN, MobileMamba-B4)
killed with SIGKILL between checkpoints and restarted with `tools/train.py
--resume` ends with exactly the weights of the uninterrupted run.

8 generated ADE20K scenes, 128 px crops, batch 2: 6 iterations, a
checkpoint every 2, killed after iteration 3."""
import os.path as osp
import signal

import pytest

from ..helpers import REPO, assert_same_weights, last_checkpoint, train
from .test_seg_e2e import ENV, _data_options

pytest.importorskip('mmseg')

CONFIG = osp.join(REPO, 'tests', 'data', 'configs', 'fpn_tiny_resume.py')


@pytest.mark.slow
def test_kill_then_resume_matches_uninterrupted_run(tiny_ade20k, tmp_path):
    opts = _data_options('fpn', tiny_ade20k) + [
        'train_dataloader.batch_size=2', 'train_cfg.max_iters=6',
        'train_cfg.val_interval=100', 'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1']
    reference = str(tmp_path / 'uninterrupted')
    train(CONFIG, reference, opts, env=ENV)

    work = str(tmp_path / 'killed')
    code, out = train(CONFIG, work, opts + ['custom_hooks.0.after_iter=3'],
                      check=False, env=ENV)
    assert code == -signal.SIGKILL, out[-3000:]
    assert last_checkpoint(work) == osp.join(work, 'iter_2.pth')

    out = train(CONFIG, work, opts, '--resume', env=ENV)
    assert 'resumed epoch: 0, iter: 2' in out, out[-3000:]
    assert_same_weights(osp.join(reference, 'iter_6.pth'),
                        osp.join(work, 'iter_6.pth'))
