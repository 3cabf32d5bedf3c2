"""Stop training at the first NaN or infinite loss, naming the iteration.

Without this, a diverged run keeps training on NaN weights, logs ``loss:
nan`` and saves checkpoints that look like any other. ``tools/train.py`` adds
:class:`FiniteLossHook` to every config; API users add
``custom_hooks = [dict(type='FiniteLossHook')]`` (registered in mmengine's
HOOKS, so every toolbox's config finds it).
"""
import math
from typing import Optional

from mmengine.hooks import Hook

HOOK_TYPE = 'FiniteLossHook'


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class FiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` when a training iteration's loss is
    not finite.

    It runs before every other ``after_train_iter`` hook (priority
    'HIGHEST'), so the checkpoint, logger and EMA hooks never see that
    iteration: the last checkpoint on disk is from before the divergence.

    Args:
        interval (int): Check every ``interval`` iterations (reading a GPU
            loss synchronises the device). Defaults to 1.
    """

    priority = 'HIGHEST'

    def __init__(self, interval: int = 1) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be a positive int, got '
                             f'{interval!r}')
        self.interval = interval

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if not outputs or not self.every_n_train_iters(runner, self.interval):
            return
        values = {}
        for name, value in outputs.items():
            try:
                values[name] = float(value)
            except (TypeError, ValueError):  # not a scalar: not a loss
                continue
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if not bad:
            return
        terms = ', '.join(f'{k}={v}' for k, v in bad.items())
        where = f'iteration {runner.iter + 1}'
        if runner.train_loop is not None and hasattr(runner.train_loop,
                                                     'max_epochs'):
            where += (f' (epoch {runner.epoch + 1}, batch {batch_idx + 1} '
                      'of the epoch)')
        raise NonFiniteLossError(
            f'training stopped: the loss is not finite at {where}: {terms}. '
            'No checkpoint of this iteration was written; those in '
            f'{runner.work_dir} are from before it. What to do: lower the '
            'learning rate (optim_wrapper.optimizer.lr) or lengthen its '
            'warm-up, clip gradients (optim_wrapper.clip_grad=dict('
            'max_norm=...)), check the data for broken labels or boxes, '
            'then train again or continue with --resume from the last good '
            'checkpoint.')


def add_finite_loss_hook(cfg) -> None:
    """Add :class:`FiniteLossHook` to ``cfg.custom_hooks`` unless the config
    already has one."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(isinstance(h, dict) and h.get('type') in
               (HOOK_TYPE, FiniteLossHook) for h in hooks):
        hooks.append(dict(type=HOOK_TYPE))
    cfg.custom_hooks = hooks
