"""tools/dist_train.sh with a MobileMamba classification config: two gloo
processes on a CPU-only machine train the real T2 ImageNet recipe (shrunk to
a generated folder) in lock-step, and the checkpoint is a MobileMamba."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from ..helpers import REPO
from .test_distributed import _free_port
from .test_train_test_tools import _data_opts

CONFIG = osp.join(REPO, 'tests', 'data', 'configs',
                  'mobilemamba_t2_tiny_folder_rank_dump.py')


@pytest.mark.slow
def test_mobilemamba_two_cpu_processes_stay_in_sync(tiny_imagenet_folder,
                                                    tmp_path):
    work = str(tmp_path / 'dist_mm')
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()),
               PYTHONPATH=REPO, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    cmd = ['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', work,
           '--cfg-options', *_data_opts(tiny_imagenet_folder)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:]
    ranks = [torch.load(osp.join(work, f'rank{r}_weights.pth'))
             for r in (0, 1)]
    assert ranks[0]['world_size'] == ranks[1]['world_size'] == 2
    s0, s1 = ranks[0]['state_dict'], ranks[1]['state_dict']
    assert s0.keys() == s1.keys()
    assert 'backbone.stages.2.blocks.1.mrffi.global_op.ss2d.A_logs' in s0
    for key in s0:
        assert torch.equal(s0[key], s1[key]), f'ranks differ at {key}'
    # trained: the zero-initialised MRFFI output BNs moved away from 0
    zero_init = [k for k in s0 if k.endswith('mrffi.proj.bn.weight')]
    assert zero_init and any(s0[k].abs().max() > 0 for k in zero_init)
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    logs = [open(osp.join(root, f)).read()
            for root, _, files in os.walk(work) for f in files
            if f.endswith('.log')]
    assert any('Distributed training: True' in log for log in logs)
    assert any('accuracy/top1' in log for log in logs)  # validated too
