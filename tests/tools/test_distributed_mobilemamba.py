"""tools/dist_train.sh with a MobileMamba classification config: two gloo
processes on a CPU-only machine train the real T2 ImageNet recipe (shrunk to
a generated folder) in lock-step, and the checkpoint is a MobileMamba."""
import os.path as osp

import pytest

from ..helpers import REPO
from .test_distributed import train_two_ranks
from .test_train_test_tools import _data_opts

CONFIG = osp.join(REPO, 'tests', 'data', 'configs',
                  'mobilemamba_t2_tiny_folder_rank_dump.py')


@pytest.mark.slow
def test_mobilemamba_two_cpu_processes_stay_in_sync(tiny_imagenet_folder,
                                                    tmp_path):
    s0, logs = train_two_ranks(CONFIG, str(tmp_path / 'dist_mm'),
                               _data_opts(tiny_imagenet_folder))
    assert 'backbone.stages.2.blocks.1.mrffi.global_op.ss2d.A_logs' in s0
    # trained: the zero-initialised MRFFI output BNs moved away from 0
    zero_init = [k for k in s0 if k.endswith('mrffi.proj.bn.weight')]
    assert zero_init and any(s0[k].abs().max() > 0 for k in zero_init)
    assert any('accuracy/top1' in log for log in logs)  # validated too
