"""Input sizes that a config implies, read the same way by every tool.

Needs nothing beyond a mapping-like config (mmengine's ``Config`` or a
dict), so model code and tools can share it without import cycles.
"""
from typing import Optional, Sequence, Tuple, Union

Size = Union[int, Sequence[int]]


def _as_hw(size: Size) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    hw = tuple(int(s) for s in size)
    return (hw[0], hw[0]) if len(hw) == 1 else (hw[0], hw[1])


def _pipelines(cfg):
    for key in ('test_dataloader', 'val_dataloader'):
        loader = cfg.get(key) or {}
        yield (loader.get('dataset') or {}).get('pipeline') or []
    yield cfg.get('test_pipeline') or []


def test_crop_size(cfg) -> Optional[Tuple[int, int]]:
    """(H, W) of the ``CenterCrop`` in the config's test pipeline (looked up
    in ``test_dataloader``, then ``val_dataloader``, then ``test_pipeline``),
    or None when the config has none."""
    for pipeline in _pipelines(cfg):
        for step in pipeline:
            kind = str(step.get('type', '')).split('.')[-1]
            if kind == 'CenterCrop' and step.get('crop_size') is not None:
                return _as_hw(step['crop_size'])
    return None
