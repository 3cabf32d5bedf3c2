"""tools/dist_train.sh on a CPU-only machine: two gloo processes train in
lock-step (mmengine 0.10.7 alone cannot start them without CUDA)."""
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch

from ..helpers import REPO, data_root_options

RANK_DUMP = osp.join(REPO, 'tests', 'data', 'configs',
                     'stock_resnet_tiny_folder_rank_dump.py')
MM_CONFIG = osp.join(REPO, 'tests', 'data', 'configs',
                     'mobilemamba_t2_tiny_folder_rank_dump.py')
ITER_CONFIG = osp.join(REPO, 'tests', 'data', 'configs',
                       'stock_resnet_tiny_folder_iter_rank_dump.py')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def train_two_ranks(config: str, work: str, cfg_options: list,
                    checkpoint: str = 'epoch_1.pth'):
    """Run ``tools/dist_train.sh CONFIG 2`` on CPU (gloo) and check that both
    ranks end with identical parameters and a world size of 2, and that the
    run saved ``checkpoint``.

    Returns:
        tuple: rank 0's parameters and the texts of the run's log files.
    """
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()),
               PYTHONPATH=REPO, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    cmd = ['bash', 'tools/dist_train.sh', config, '2', '--work-dir', work,
           '--cfg-options', *cfg_options]
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:]
    ranks = [torch.load(osp.join(work, f'rank{r}_weights.pth'))
             for r in (0, 1)]
    assert ranks[0]['world_size'] == ranks[1]['world_size'] == 2
    s0, s1 = ranks[0]['state_dict'], ranks[1]['state_dict']
    assert s0.keys() == s1.keys()
    for key in s0:
        assert torch.equal(s0[key], s1[key]), f'ranks differ at {key}'
    assert osp.isfile(osp.join(work, checkpoint))
    logs = [open(osp.join(root, f)).read()
            for root, _, files in os.walk(work) for f in files
            if f.endswith('.log')]
    assert any('Distributed training: True' in log for log in logs)
    return s0, logs


@pytest.mark.slow
def test_two_cpu_processes_stay_in_sync(tiny_imagenet_folder, tmp_path):
    _, logs = train_two_ranks(
        RANK_DUMP, str(tmp_path / 'dist'),
        ['train_cfg.max_epochs=1', *data_root_options(tiny_imagenet_folder)])
    assert any('world_size: 2' in log or 'GPU number: 2' in log
               for log in logs)

@pytest.mark.slow
def test_mobilemamba_two_cpu_processes_stay_in_sync(tiny_imagenet_folder,
                                                    tmp_path):
    s0, logs = train_two_ranks(MM_CONFIG, str(tmp_path / 'dist_mm'),
                               data_root_options(tiny_imagenet_folder))
    assert 'backbone.stages.2.blocks.1.mrffi.global_op.ss2d.A_logs' in s0
    # trained: the zero-initialised MRFFI output BNs moved away from 0
    zero_init = [k for k in s0 if k.endswith('mrffi.proj.bn.weight')]
    assert zero_init and any(s0[k].abs().max() > 0 for k in zero_init)
    assert any('accuracy/top1' in log for log in logs)  # validated too


@pytest.mark.slow
def test_iteration_based_with_persistent_workers_past_one_pass(
        tiny_imagenet_folder, tmp_path):
    _, logs = train_two_ranks(ITER_CONFIG, str(tmp_path / 'dist_iter'),
                              data_root_options(tiny_imagenet_folder),
                              checkpoint='iter_6.pth')
    assert any('Iter(train) [6/6]' in log for log in logs)
    # each rank's InfiniteSampler went on into its second pass
    assert not any('Reach the end of the dataloader' in log for log in logs)
