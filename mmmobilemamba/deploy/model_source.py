"""The model an export starts from: built from a config and a checkpoint,
and wrapped to take one image tensor (what runtimes call).

:func:`load_model` is shared by the export tools, the benchmarks and the
evaluation of exported files.
"""
import copy
import importlib
import os.path as osp
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn


class Logits(nn.Module):
    """An OpenMMLab classifier in tensor mode: image -> logits."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x, mode='tensor')


class Features(nn.Module):
    """A backbone: image -> tuple of feature maps."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.backbone(x))


def load_model(config: str,
               checkpoint: Optional[str],
               cfg_options: Optional[dict] = None,
               out_indices: Optional[Sequence[int]] = None,
               trust_checkpoint: bool = False):
    """Build ``config``'s model, load ``checkpoint`` and return (model in
    eval mode, cfg).

    Args:
        config (str): Config file.
        checkpoint (str, optional): Its checkpoint; None keeps the random
            initialisation (benchmarks).
        cfg_options (dict, optional): Overrides merged into the config.
        out_indices (Sequence[int], optional): Backbone feature export:
            these indices are returned and the head's weights may be
            missing from ``checkpoint``. Defaults to None (whole model,
            strict loading).
        trust_checkpoint (bool): Unpickle arbitrary objects (only for a file
            you trust). Defaults to False.
    """
    import mmmobilemamba  # noqa: F401  (registration)
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint

    from mmmobilemamba.checkpoint import trust_checkpoints
    for path, what in ((config, 'config'), (checkpoint, 'checkpoint')):
        if path is not None and not osp.isfile(path):
            raise FileNotFoundError(f'{what} {path} not found')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.model.get('type') == 'MobileMambaLoRA':
        raise ValueError(
            f'{config} is a LoRA config; fold the adapters into the base '
            'weights first (tools/model_converters/merge_lora.py CONFIG CKPT '
            'OUT --out-config OUT.py) and export OUT with OUT.py')
    model_cfg = copy.deepcopy(cfg.model)
    if 'train_cfg' in model_cfg:  # augments / samplers: training only (a
        model_cfg['train_cfg'] = None  # two-stage detector needs the key)
    backbone_cfg = model_cfg.get('backbone')
    if backbone_cfg is None:
        raise ValueError(f'{config} has no model.backbone')
    if checkpoint is not None:
        backbone_cfg['init_cfg'] = None  # the weights come from checkpoint
    if out_indices is not None:
        backbone_cfg['out_indices'] = tuple(out_indices)
    scope = cfg.get('default_scope', 'mmpretrain')
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(model_cfg)
    if checkpoint is not None:
        with trust_checkpoints(trust_checkpoint):
            load_checkpoint(model, checkpoint, map_location='cpu',
                            strict=out_indices is None)
    return model.eval(), cfg


def input_size(cfg, shape: Optional[Sequence[int]] = None
               ) -> Tuple[int, int]:
    """``shape`` (H or H W), else the config's test crop, else 224 x 224."""
    if shape:
        return int(shape[0]), int(shape[-1])
    from mmmobilemamba.config_sizes import test_crop_size
    return test_crop_size(cfg) or (224, 224)
