"""A short schedule on the unchanged ImageNet recipe learns: MobileMamba-T2
with everything of configs/mobilemamba/mobilemamba-t2_8xb128_in1k.py but
the data (real digit scans, 32 px), the classes and a short schedule,
trained with tools/train.py and scored by tools/test.py on held-out scans.

Before the EMA warm-up (an EMA horizon of ~5,000 iterations in a run of a
few hundred) and with the lr scaled by batch / 1024 behind the user's back,
this scored chance (10 %)."""
import os.path as osp
import re

import pytest

from ..helpers import REPO, run_tool

pytest.importorskip('mmpretrain')

CONFIG = osp.join(REPO, 'tests', 'data', 'configs',
                  'mobilemamba_t2_digits_short.py')
EPOCHS = 6


@pytest.mark.slow
def test_t2_recipe_on_digit_scans_beats_chance_clearly(tmp_path):
    pytest.importorskip('sklearn')
    root = str(tmp_path / 'digits32')
    run_tool('tools/dataset_converters/make_imagenet_folder.py', root,
             '--source', 'digits', '--size', '32', '--train-per-class', '120',
             '--val-per-class', '50')
    data = [f'{split}_dataloader.dataset.data_root={root}'
            for split in ('train', 'val', 'test')]
    work = str(tmp_path / 'work')
    out = run_tool('tools/train.py', CONFIG, '--work-dir', work,
                   '--cfg-options', f'train_cfg.max_epochs={EPOCHS}',
                   f'train_cfg.val_interval={EPOCHS}', *data)
    assert 'Scaling the original LR' not in out  # the lr is as written
    out = run_tool('tools/test.py', CONFIG,
                   osp.join(work, f'epoch_{EPOCHS}.pth'), '--work-dir',
                   str(tmp_path / 'test'), '--cfg-options', *data)
    match = re.search(r'accuracy/top1: ([\d.]+)', out)
    assert match, out[-3000:]
    # 10 classes, 500 held-out scans: chance is 10 %
    assert float(match.group(1)) > 50.0, out[-3000:]
