"""Train a classifier, detector or segmentor from an OpenMMLab config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--cfg-options k=v ...] [--launcher none|pytorch|slurm]
        [--trust-checkpoint]

The config's ``default_scope`` (mmpretrain, mmdet or mmseg) picks the toolbox.
Checkpoints (``--resume``, ``load_from``, pretrained weights) load without
unpickling arbitrary objects; ``--trust-checkpoint`` lifts that for files you
trust. Training stops at the first iteration whose loss is NaN or infinite
(:class:`mmmobilemamba.utils.loss_check.FiniteLossHook`), before a checkpoint
of it is written.
"""
import argparse

from mmengine.config import DictAction

import mmmobilemamba  # noqa: F401  (compat fixes + registration)
from mmmobilemamba.checkpoint import add_trust_argument, trust_checkpoints
from mmmobilemamba.utils import build_runner, prepare_train_config
from mmmobilemamba.utils.loss_check import add_finite_loss_hook


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or from the latest checkpoint in the work '
        'dir when no path is given')
    parser.add_argument(
        '--amp', action='store_true', help='mixed-precision training (GPU)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by the real batch size (config auto_scale_lr)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. train_cfg.max_epochs=3')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm'],
        default='none',
        help='job launcher (pytorch = torchrun; works on CPU with gloo)')
    add_trust_argument(parser)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with trust_checkpoints(args.trust_checkpoint):
        cfg = prepare_train_config(
            args.config,
            work_dir=args.work_dir,
            resume=args.resume,
            amp=args.amp,
            auto_scale_lr=args.auto_scale_lr,
            cfg_options=args.cfg_options,
            launcher=args.launcher)
        add_finite_loss_hook(cfg)
        runner = build_runner(cfg)
        runner.train()


if __name__ == '__main__':
    main()
