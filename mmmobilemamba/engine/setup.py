"""Switch a training config to the crash-safe, exactly resumable pieces."""
from typing import List

_STOCK_HOOKS = ('CheckpointHook', 'mmengine.CheckpointHook')
_STOCK_LOOPS = {
    'EpochBasedTrainLoop': 'ResumableEpochBasedTrainLoop',
    'mmengine.EpochBasedTrainLoop': 'ResumableEpochBasedTrainLoop',
    'IterBasedTrainLoop': 'ResumableIterBasedTrainLoop',
    'mmengine.IterBasedTrainLoop': 'ResumableIterBasedTrainLoop',
}


def make_resumable(cfg) -> List[str]:
    """Use ResumableCheckpointHook and the Resumable*TrainLoop where a config
    names mmengine's CheckpointHook and EpochBasedTrainLoop or
    IterBasedTrainLoop.

    Both accept the stock classes' arguments and behave the same apart
    from crash safety and what a checkpoint holds, so the config's meaning
    is kept. Custom hooks and loops are left alone.

    Args:
        cfg (Config): A training config, changed in place.

    Returns:
        list[str]: What was changed, one line each.
    """
    changes = []
    hooks = cfg.get('default_hooks') or {}
    checkpoint = hooks.get('checkpoint')
    if isinstance(checkpoint, dict) and checkpoint.get('type') in _STOCK_HOOKS:
        checkpoint['type'] = 'ResumableCheckpointHook'
        changes.append('default_hooks.checkpoint: CheckpointHook -> '
                       'ResumableCheckpointHook')
    train_cfg = cfg.get('train_cfg')
    if isinstance(train_cfg, dict):
        stock = train_cfg.get('type')
        if stock is None and 'by_epoch' in train_cfg:
            stock = ('EpochBasedTrainLoop'
                     if train_cfg.pop('by_epoch') else 'IterBasedTrainLoop')
        if stock in _STOCK_LOOPS:
            train_cfg['type'] = _STOCK_LOOPS[stock]
            changes.append(f'train_cfg: {stock} -> {_STOCK_LOOPS[stock]}')
    return changes
