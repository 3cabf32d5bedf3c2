"""Turn a config plus command-line options into a Runner, for every toolbox.

``tools/train.py`` and ``tools/test.py`` are one pair for classification,
detection and segmentation: the config's ``default_scope`` ('mmpretrain',
'mmdet' or 'mmseg') decides which toolbox's conventions apply where they
differ (visualisation hooks, result dumping). Every training run gets the
crash-safe checkpoint hook and, when epoch-based, the loop that resumes
inside an epoch (:func:`mmmobilemamba.engine.make_resumable`).
"""
import os.path as osp
import warnings
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from ..engine import make_resumable
from .data_checks import check_dataset_paths
from .dist import setup_distributed

SCOPES = ('mmpretrain', 'mmdet', 'mmseg')


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config, apply ``--cfg-options`` and check its scope."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path} does not exist')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(f'{path}: default_scope must be one of {SCOPES}, '
                         f'got {scope!r}')
    return cfg


def _default_work_dir(cfg: Config, config_path: str,
                      work_dir: Optional[str]) -> str:
    if work_dir is not None:
        return work_dir
    if cfg.get('work_dir'):
        return cfg.work_dir
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def _replace_sync_bn(node) -> int:
    """Replace ``type='SyncBN'`` norm configs by 'BN' in place; count them."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += _replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _replace_sync_bn(value)
    return count


def _single_process_adjustments(cfg: Config, launcher: str) -> None:
    """Make multi-GPU configs run unchanged in one (CPU) process, or in
    several CPU processes.

    Every change is logged: a config is never altered silently.
    """
    if launcher == 'none':
        n = _replace_sync_bn(cfg.model)
        if n:
            warnings.warn(f'not distributed: {n} SyncBN layer config(s) '
                          'replaced by BN (SyncBN needs a process group)')
    elif not torch.cuda.is_available():
        n = _replace_sync_bn(cfg.model)
        if n:
            warnings.warn(f'distributed on CPUs (gloo): {n} SyncBN layer '
                          "config(s) replaced by BN (torch's SyncBatchNorm "
                          'runs on GPUs only); BatchNorm statistics are per '
                          'process')
    wrapper = cfg.get('optim_wrapper') or {}
    if not torch.cuda.is_available() and wrapper.get('type') == \
            'AmpOptimWrapper':
        wrapper['type'] = 'OptimWrapper'
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            wrapper.pop(key, None)
        warnings.warn('no CUDA device: AmpOptimWrapper (mmengine supports '
                      'AMP on GPUs only) replaced by OptimWrapper; training '
                      'runs in fp32')


def prepare_train_config(config: str,
                         work_dir: Optional[str] = None,
                         resume: Optional[str] = None,
                         amp: bool = False,
                         auto_scale_lr: bool = False,
                         cfg_options: Optional[dict] = None,
                         launcher: str = 'none') -> Config:
    """Config for ``tools/train.py``.

    Args:
        config (str): Config file path.
        work_dir (str, optional): Overrides the config's work_dir.
        resume (str, optional): 'auto' resumes from the latest checkpoint in
            work_dir; a path resumes from that checkpoint.
        amp (bool): Mixed precision (needs a GPU). Defaults to False.
        auto_scale_lr (bool): Scale the lr by the real total batch size
            (``auto_scale_lr.base_batch_size`` in the config). Configs
            declare it but leave it off: a given lr is used as given.
        cfg_options (dict, optional): ``--cfg-options`` overrides.
        launcher (str): 'none', 'pytorch' or 'slurm'. Defaults to 'none'.
    """
    cfg = load_config(config, cfg_options)
    cfg.work_dir = _default_work_dir(cfg, config, work_dir)
    if amp:
        if not torch.cuda.is_available():
            raise RuntimeError('--amp needs a CUDA device (mmengine 0.10.7 '
                               'supports AMP training on GPUs only)')
        wrapper = cfg.optim_wrapper
        if wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
            wrapper.type = 'AmpOptimWrapper'
            wrapper.setdefault('loss_scale', 'dynamic')
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume is not None:
        if not osp.isfile(resume):
            raise FileNotFoundError(f'--resume checkpoint {resume} not found')
        cfg.resume = True
        cfg.load_from = resume
    if auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in \
                cfg.auto_scale_lr:
            raise ValueError('--auto-scale-lr needs `auto_scale_lr = dict('
                             'base_batch_size=...)` in the config')
        cfg.auto_scale_lr.enable = True
    for change in make_resumable(cfg):
        print_log(f'crash-safe training: {change}', logger='current')
    setup_distributed(cfg, launcher)
    _single_process_adjustments(cfg, launcher)
    check_dataset_paths(cfg, splits=('train', 'val'))
    return cfg


def _enable_visualisation(cfg: Config, show_dir: str) -> None:
    hooks = cfg.get('default_hooks') or {}
    if 'visualization' not in hooks:
        raise ValueError('--show-dir needs a visualization hook in '
                         "default_hooks (e.g. dict(type='VisualizationHook'))")
    hook = hooks['visualization']
    scope = cfg.default_scope
    if scope == 'mmpretrain':
        hook['enable'] = True
        hook['out_dir'] = show_dir
    elif scope == 'mmdet':
        hook['draw'] = True
        hook['test_out_dir'] = show_dir
    else:  # mmseg draws into the visualizer's save_dir
        hook['draw'] = True
        cfg.visualizer['save_dir'] = show_dir


def _add_dump(cfg: Config, out: str) -> None:
    scope = cfg.default_scope
    if scope == 'mmseg':
        # mmseg writes prediction PNGs into a folder
        cfg.test_evaluator['output_dir'] = out
        cfg.test_evaluator['keep_results'] = True
        return
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl file for {scope}, got {out}')
    dump = dict(type='DumpDetResults' if scope == 'mmdet' else
                'mmengine.evaluator.DumpResults', out_file_path=out)
    evaluator = cfg.test_evaluator
    if isinstance(evaluator, (list, tuple)):
        cfg.test_evaluator = list(evaluator) + [dump]
    elif 'metrics' in evaluator:  # an Evaluator dict
        metrics = evaluator['metrics']
        metrics = list(metrics) if isinstance(metrics, (list, tuple)) else [
            metrics
        ]
        evaluator['metrics'] = metrics + [dump]
    else:
        cfg.test_evaluator = [evaluator, dump]


def prepare_test_config(config: str,
                        checkpoint: str,
                        work_dir: Optional[str] = None,
                        out: Optional[str] = None,
                        show_dir: Optional[str] = None,
                        cfg_options: Optional[dict] = None,
                        launcher: str = 'none') -> Config:
    """Config for ``tools/test.py`` (arguments as on its command line)."""
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} not found')
    cfg = load_config(config, cfg_options)
    cfg.work_dir = _default_work_dir(cfg, config, work_dir)
    cfg.load_from = checkpoint
    cfg.resume = False
    if show_dir:
        _enable_visualisation(cfg, show_dir)
    if out:
        _add_dump(cfg, out)
    setup_distributed(cfg, launcher)
    _single_process_adjustments(cfg, launcher)
    check_dataset_paths(cfg, splits=('test', ))
    return cfg


def build_runner(cfg: Config):
    """The toolbox's Runner (a config may name its own ``runner_type``)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
