"""A classification run killed with SIGKILL (between iterations, or while a
checkpoint is being written) and restarted with `tools/train.py --resume`
ends with exactly the weights of the same run left uninterrupted.

MobileMamba-T2 with the ImageNet recipe (RandAugment, Mixup/CutMix, random
erasing, warm-up EMA, two persistent dataloader workers) on 40 digit scans
of 32 px: 5 iterations an epoch, 3 epochs, a checkpoint every 2 iterations
inside an epoch and one at the end of each epoch."""
import glob
import os.path as osp
import signal

import pytest

from ..helpers import (REPO, assert_same_weights, last_checkpoint, load,
                       run_tool, train)

pytest.importorskip('mmpretrain')

CONFIG = osp.join(REPO, 'tests', 'data', 'configs',
                  'mobilemamba_t2_tiny_resume.py')


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
    pytest.importorskip('sklearn')
    root = str(tmp_path_factory.mktemp('digits'))
    run_tool('tools/dataset_converters/make_imagenet_folder.py', root,
             '--source', 'digits', '--size', '32', '--train-per-class', '4',
             '--val-per-class', '2')
    return [f'{split}_dataloader.dataset.data_root={root}'
            for split in ('train', 'val', 'test')]


@pytest.fixture(scope='module')
def reference(digits, tmp_path_factory):
    """The uninterrupted run's final checkpoint."""
    work = str(tmp_path_factory.mktemp('uninterrupted'))
    train(CONFIG, work, digits)
    return osp.join(work, 'epoch_3.pth')


@pytest.mark.slow
def test_two_uninterrupted_runs_are_identical(digits, reference, tmp_path):
    work = str(tmp_path / 'again')
    train(CONFIG, work, digits)
    assert_same_weights(reference, osp.join(work, 'epoch_3.pth'))


@pytest.mark.slow
def test_kill_in_the_middle_of_epoch_2_then_resume(digits, reference,
                                                   tmp_path):
    work = str(tmp_path / 'killed')
    # iteration 7 = batch 2 of epoch 2; the last save was after iteration 6
    code, out = train(CONFIG, work, digits + ['custom_hooks.1.after_iter=7'],
                      check=False)
    assert code == -signal.SIGKILL, out[-3000:]
    assert 'Epoch(train) [2][2/5]' in out
    assert 'Epoch(train) [2][3/5]' not in out
    assert last_checkpoint(work) == osp.join(work, 'resume_iter_6.pth')
    state = load(osp.join(work, 'resume_iter_6.pth'))['resume_state']
    assert (state['epoch'], state['batch']) == (1, 1)

    out = train(CONFIG, work, digits, '--resume')
    assert 'resumed epoch: 1, iter: 6' in out, out[-3000:]
    # the epoch continues with its second batch, none is trained twice
    assert 'Epoch(train) [2][2/5]' in out
    assert 'Epoch(train) [2][1/5]' not in out
    assert_same_weights(reference, osp.join(work, 'epoch_3.pth'))


@pytest.mark.slow
def test_kill_while_writing_a_checkpoint_then_resume(digits, reference,
                                                     tmp_path):
    work = str(tmp_path / 'killed_in_save')
    code, out = train(
        CONFIG, work, digits + ['custom_hooks.1.during_save_at_iter=8'],
        check=False)
    assert code == -signal.SIGKILL, out[-3000:]
    # the half-written file never took the checkpoint's name, and the
    # pointer still names the previous, complete checkpoint
    assert not osp.exists(osp.join(work, 'resume_iter_8.pth'))
    partial = glob.glob(osp.join(work, '.tmp-resume_iter_8.pth.*'))
    assert len(partial) == 1 and osp.getsize(partial[0]) > 0
    assert last_checkpoint(work) == osp.join(work, 'resume_iter_6.pth')
    load(last_checkpoint(work))  # complete

    out = train(CONFIG, work, digits, '--resume')
    assert 'resumed epoch: 1, iter: 6' in out, out[-3000:]
    assert not glob.glob(osp.join(work, '.tmp-*'))  # cleaned up
    assert_same_weights(reference, osp.join(work, 'epoch_3.pth'))
