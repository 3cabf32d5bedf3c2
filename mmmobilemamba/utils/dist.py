"""Distributed start-up that also works on CPU-only machines.

mmengine 0.10.7's launchers call ``torch.cuda.set_device`` before creating the
process group, even for the gloo backend, so a CPU run under torchrun dies
with "Found no NVIDIA driver". On a machine without CUDA we create the gloo
process group ourselves (mmengine's Runner then skips its own init) and make
the Runner wrap the model without ``device_ids``, which DDP refuses for a CPU
module.
"""
import os
from typing import Tuple

import torch
import torch.distributed as dist


def _rank_and_world_size(launcher: str) -> Tuple[int, int]:
    if launcher == 'pytorch':
        missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                               'MASTER_PORT') if k not in os.environ]
        if missing:
            raise RuntimeError(
                f'--launcher pytorch needs the torchrun environment; missing '
                f'{missing}. Start with tools/dist_train.sh or torchrun.')
        return int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    if launcher == 'slurm':
        rank = int(os.environ['SLURM_PROCID'])
        world_size = int(os.environ['SLURM_NTASKS'])
        os.environ.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in os.environ:
            import subprocess
            node_list = os.environ['SLURM_NODELIST']
            os.environ['MASTER_ADDR'] = subprocess.getoutput(
                f'scontrol show hostname {node_list} | head -n1')
        os.environ['RANK'] = str(rank)
        os.environ['WORLD_SIZE'] = str(world_size)
        os.environ.setdefault('LOCAL_RANK', os.environ.get('SLURM_LOCALID',
                                                           '0'))
        return rank, world_size
    raise ValueError(f'unknown launcher {launcher!r}; expected none, '
                     'pytorch or slurm')


def setup_distributed(cfg, launcher: str) -> None:
    """Set ``cfg.launcher`` and, on a CPU-only machine, start gloo ourselves.

    Args:
        cfg (mmengine.Config): The config the Runner will be built from.
        launcher (str): 'none', 'pytorch' or 'slurm'.
    """
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return  # mmengine's own launcher handles GPUs
    if not dist.is_initialized():
        rank, world_size = _rank_and_world_size(launcher)
        dist.init_process_group('gloo', rank=rank, world_size=world_size)
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
