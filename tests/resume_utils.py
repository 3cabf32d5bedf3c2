"""Helpers of the kill-and-resume tests: run tools/train.py, compare the
final checkpoints of two runs bit for bit."""
import os
import os.path as osp

import torch

from .helpers import REPO, run_tool

# the test configs import tests.data.kill_hook
ENV = dict(PYTHONPATH=os.pathsep.join(
    p for p in (REPO, os.environ.get('PYTHONPATH')) if p))


def train(config, work_dir, options, *extra, check=True, env=None):
    """tools/train.py CONFIG --work-dir DIR [extra] --cfg-options ..."""
    return run_tool('tools/train.py', config, '--work-dir', work_dir,
                    *extra, '--cfg-options', *options,
                    env=dict(ENV, **(env or {})), check=check)


def load(path):
    # a Runner checkpoint (message hub, config text, numpy metadata)
    return torch.load(path, map_location='cpu', weights_only=False)


def assert_same_weights(ckpt_a, ckpt_b):
    """Model, EMA and optimizer state of two checkpoints are identical."""
    a, b = load(ckpt_a), load(ckpt_b)
    for key in ('state_dict', 'ema_state_dict'):
        if key not in a and key not in b:
            continue
        assert a[key].keys() == b[key].keys(), key
        differ = [k for k in a[key] if not torch.equal(a[key][k], b[key][k])]
        assert not differ, f'{key}: {len(differ)} tensors differ, e.g. ' \
            f'{differ[:3]} ({ckpt_a} vs {ckpt_b})'
    opt_a = a['optimizer'].get('state', a['optimizer'])
    opt_b = b['optimizer'].get('state', b['optimizer'])
    assert opt_a.keys() == opt_b.keys()
    for k in opt_a:
        for name, value in opt_a[k].items():
            assert torch.equal(torch.as_tensor(value),
                               torch.as_tensor(opt_b[k][name])), (k, name)


def last_checkpoint(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()
