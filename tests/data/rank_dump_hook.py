"""Test-only hook: every rank saves its final weights, so a test can check
that distributed training kept the ranks in sync."""
import os.path as osp

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module(force=True)
class RankWeightDumpHook(Hook):

    def after_train(self, runner) -> None:
        model = getattr(runner.model, 'module', runner.model)
        # parameters only: BN running stats are per-rank after the last
        # forward (DDP broadcasts buffers at the start of each forward)
        state = {k: v.detach().cpu() for k, v in model.named_parameters()}
        torch.save(dict(world_size=get_world_size(), state_dict=state),
                   osp.join(runner.work_dir, f'rank{get_rank()}_weights.pth'))
