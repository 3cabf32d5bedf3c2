"""Evaluate a checkpoint with an OpenMMLab config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--show-dir DIR] [--cfg-options k=v ...] [--launcher none|pytorch|slurm]

The checkpoint must match the config's model: a mismatch is an error that
lists the missing and unexpected keys (mmengine alone would only warn and
evaluate random weights). Checkpoints are unpickled: load only files you
trust (see mmmobilemamba/compat.py).
"""
import argparse

from mmengine.config import DictAction

import mmmobilemamba  # noqa: F401  (compat fixes + registration)
from mmmobilemamba.utils import (build_runner, check_checkpoint_matches,
                                 prepare_test_config)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where logs and metrics go')
    parser.add_argument(
        '--out',
        help='dump predictions: a .pkl file (classification, detection) or '
        'a folder of prediction PNGs (segmentation)')
    parser.add_argument(
        '--show-dir', help='write visualised predictions to this folder')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.backbone.deploy=True')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = prepare_test_config(
        args.config,
        args.checkpoint,
        work_dir=args.work_dir,
        out=args.out,
        show_dir=args.show_dir,
        cfg_options=args.cfg_options,
        launcher=args.launcher)
    runner = build_runner(cfg)
    check_checkpoint_matches(runner.model, args.checkpoint)
    return runner.test()


if __name__ == '__main__':
    main()
