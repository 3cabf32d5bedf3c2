"""Evaluate a checkpoint, or an exported model file, with an OpenMMLab
config.

    python tools/test.py CONFIG CHECKPOINT|MODEL.onnx|MODEL.pte
        [--work-dir DIR] [--out FILE] [--show-dir DIR] [--cfg-options k=v ...]
        [--launcher none|pytorch|slurm] [--trust-checkpoint] [--threads N]

An ``.onnx`` or ``.pte`` file (a detector or segmentor written by
tools/deployment/export.py, with its ``MODEL.json``) runs in its runtime in
place of the model: the config's test dataloader (its ``Resize`` set to the
exported size), data preprocessor and evaluator are used as they are
(:mod:`mmmobilemamba.deploy.backend_model`). ``--threads`` sets the
runtime's threads.

The checkpoint must match the config's model: a mismatch is an error that
lists the missing and unexpected keys (mmengine alone would only warn and
evaluate random weights). Checkpoints load without unpickling arbitrary
objects; ``--trust-checkpoint`` lifts that for a file you trust (see
mmmobilemamba/checkpoint.py).

``--out`` is written under a temporary name and renamed when the evaluation
has finished: a run that fails leaves no result file behind.
"""
import argparse
import os
import os.path as osp
import shutil

from mmengine.config import DictAction
from mmengine.dist import is_main_process

import mmmobilemamba  # noqa: F401  (compat fixes + registration)
from mmmobilemamba.checkpoint import add_trust_argument, trust_checkpoints
from mmmobilemamba.deploy.backend_model import (backend_test_config,
                                                is_backend_file)
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
    add_trust_argument(parser)
    parser.add_argument('--threads', type=int, default=None,
                        help='runtime threads for an .onnx / .pte model')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _redirect(node, out: str, tmp: str) -> int:
    """Point every evaluator entry that writes ``out`` at ``tmp``."""
    count = 0
    if isinstance(node, dict):
        for key in ('out_file_path', 'output_dir'):
            if node.get(key) == out:
                node[key] = tmp
                count += 1
        for value in node.values():
            count += _redirect(value, out, tmp)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _redirect(value, out, tmp)
    return count


def _temporary_name(out: str) -> str:
    """A hidden name next to ``out``, keeping a .pkl/.pickle extension."""
    out = out.rstrip('/')
    ext = osp.splitext(out)[1] if out.endswith(('.pkl', '.pickle')) else ''
    return osp.join(osp.dirname(osp.abspath(out)),
                    f'.{osp.basename(out)}.incomplete{ext}')


def _remove(path: str) -> None:
    if osp.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif osp.exists(path):
        os.remove(path)


def _publish(tmp: str, out: str) -> None:
    """Move the finished results from ``tmp`` to ``out``."""
    if osp.isdir(tmp) and osp.isdir(out):
        for name in os.listdir(tmp):
            os.replace(osp.join(tmp, name), osp.join(out, name))
        os.rmdir(tmp)
    elif osp.exists(tmp):
        os.replace(tmp, out)


def main(argv=None):
    args = parse_args(argv)
    with trust_checkpoints(args.trust_checkpoint):
        cfg = prepare_test_config(
            args.config,
            args.checkpoint,
            work_dir=args.work_dir,
            out=args.out,
            show_dir=args.show_dir,
            cfg_options=args.cfg_options,
            launcher=args.launcher)
        tmp = None
        if args.out and _redirect(cfg.test_evaluator, args.out,
                                  _temporary_name(args.out)):
            tmp = _temporary_name(args.out)
            _remove(tmp)  # left by a run that was killed
        backend = is_backend_file(args.checkpoint)
        if backend:
            backend_test_config(cfg, args.checkpoint, args.threads)
        runner = build_runner(cfg)
        if not backend:
            check_checkpoint_matches(runner.model, args.checkpoint)
        try:
            metrics = runner.test()
        except BaseException:
            if tmp and is_main_process():
                _remove(tmp)
            raise
        if tmp and is_main_process():
            _publish(tmp, args.out)
        return metrics


if __name__ == '__main__':
    main()
