"""Put a state dict into a module and say which keys did not match.

The hints for the usual mistakes (release layout, missing prefix, BN-fused
against unfused weights) live here, in one place.
"""
import warnings
from typing import Callable, Dict, List, NamedTuple, Optional

import torch

from .loader import _log_warning, load_checkpoint_file


class LoadReport(NamedTuple):
    """Keys of a checkpoint that did not match the module."""
    missing_keys: List[str]
    unexpected_keys: List[str]


def state_dict_of(checkpoint, source: str = 'checkpoint'
                  ) -> Dict[str, torch.Tensor]:
    """The weights in a loaded checkpoint: its 'state_dict' (or 'model')
    entry, or the dict itself; a 'module.' prefix on every key is removed.
    """
    state = checkpoint
    if isinstance(checkpoint, dict):
        for key in ('state_dict', 'model'):
            if isinstance(checkpoint.get(key), dict):
                state = checkpoint[key]
                break
    if not isinstance(state, dict):
        raise ValueError(f'{source} holds no state_dict (got '
                         f'{type(state).__name__})')
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return state


def _is_deploy(module: torch.nn.Module) -> bool:
    return any(getattr(m, 'deploy', False) is True for m in module.modules())


def fusion_hint(module: torch.nn.Module, unexpected: List[str]) -> str:
    """Advice when the weights and the module differ in BN fusion."""
    if _is_deploy(module) and any('.bn.' in k for k in unexpected):
        return (' The weights are unfused but the model was built with '
                'deploy=True; build it with deploy=False.')
    if not _is_deploy(module) and any(k.endswith('conv.bias')
                                      for k in unexpected):
        return (' The weights look BN-fused; build the model with '
                'deploy=True (config: model.backbone.deploy=True, and '
                'model.head.deploy=True for a BNLinearClsHead).')
    return ''


def _layout_hint(state_dict: Dict[str, torch.Tensor]) -> str:
    if any(k.startswith(('patch_embed.', 'blocks1.')) for k in state_dict):
        return (' It is in the released MobileMamba layout: convert it first '
                'with tools/model_converters/mobilemamba_to_mmpretrain.py '
                '(mmmobilemamba.checkpoint.release).')
    if any(k.startswith('backbone.') for k in state_dict):
        return " Its keys start with 'backbone.': pass that prefix."
    return ''


def compare_keys(module: torch.nn.Module,
                 state_dict: Dict[str, torch.Tensor]) -> LoadReport:
    """Missing and unexpected keys of ``state_dict`` for ``module``."""
    expected, given = set(module.state_dict()), set(state_dict)
    return LoadReport(sorted(expected - given), sorted(given - expected))


def _mismatch(report: LoadReport, limit: Optional[int] = None) -> str:
    def show(keys):
        if limit is None or len(keys) <= limit:
            return str(keys)
        return str(keys[:limit])[:-1] + ', ...]'
    return (f'{len(report.missing_keys)} missing keys '
            f'{show(report.missing_keys)}, {len(report.unexpected_keys)} '
            f'unexpected keys {show(report.unexpected_keys)}')


def load_state_dict(module: torch.nn.Module,
                    state_dict: Dict[str, torch.Tensor],
                    strict: bool = False,
                    source: str = 'state_dict') -> LoadReport:
    """``module.load_state_dict`` that reports (or, if strict, raises on)
    missing and unexpected keys, and refuses a load that matches nothing.

    Args:
        module (nn.Module): Where the weights go.
        state_dict (dict): Weights in the module's key layout.
        strict (bool): Raise ``KeyError`` on any mismatch. Defaults to False.
        source (str): The weights' origin, for messages.

    Returns:
        LoadReport: The missing and unexpected keys (also logged and warned).
    """
    name = type(module).__name__
    if not set(state_dict) & set(module.state_dict()):
        raise KeyError(f'{source} shares no key with {name}; nothing would '
                       f'be loaded.{_layout_hint(state_dict)} First keys: '
                       f'{sorted(state_dict)[:5]}')
    missing, unexpected = module.load_state_dict(state_dict, strict=False)
    report = LoadReport(sorted(missing), sorted(unexpected))
    if report.missing_keys or report.unexpected_keys:
        message = (f'loading {source} into {name}: {_mismatch(report)}.'
                   f'{fusion_hint(module, report.unexpected_keys)}')
        if strict:
            raise KeyError(message)
        _log_warning(message)
        warnings.warn(message)
    return report


def load_checkpoint(module: torch.nn.Module,
                    filename: str,
                    prefix: Optional[str] = None,
                    map_location='cpu',
                    strict: bool = False,
                    loader: Optional[Callable] = None) -> LoadReport:
    """Load a checkpoint file's weights into ``module`` with a key report.

    Args:
        module (nn.Module): Where the weights go.
        filename (str): Local path or URL (anything mmengine's
            ``CheckpointLoader`` reads; local files and URLs end up in
            :func:`load_checkpoint_file`).
        prefix (str, optional): Keep only keys starting with it and strip
            it, e.g. 'backbone.' for a classifier checkpoint. Defaults to
            None.
        map_location: Defaults to 'cpu'.
        strict (bool): Raise instead of warning on any mismatch.
            Defaults to False.
        loader (callable, optional): ``loader(filename, map_location)``;
            defaults to mmengine's ``CheckpointLoader.load_checkpoint``.

    Returns:
        LoadReport: The missing and unexpected keys.
    """
    if loader is None:
        from mmengine.runner.checkpoint import CheckpointLoader
        loader = CheckpointLoader.load_checkpoint
    checkpoint = loader(filename, map_location=map_location)
    state_dict = state_dict_of(checkpoint, source=str(filename))
    if prefix:
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()
                      if k.startswith(prefix)}
        if not state_dict:
            raise KeyError(f'no key of checkpoint {filename} starts with '
                           f'prefix {prefix!r}')
    return load_state_dict(module, state_dict, strict=strict,
                           source=str(filename))


def check_checkpoint_matches(model: torch.nn.Module, checkpoint: str) -> None:
    """Raise ``ValueError`` if ``checkpoint`` does not hold this model's
    weights, naming what is missing and unexpected.

    mmengine loads test checkpoints non-strictly and only logs mismatches, so
    a wrong checkpoint would be evaluated with random weights.
    """
    state = state_dict_of(load_checkpoint_file(checkpoint, 'cpu'),
                          source=str(checkpoint))
    model = getattr(model, 'module', model)
    report = compare_keys(model, state)
    if report.missing_keys or report.unexpected_keys:
        raise ValueError(
            f'checkpoint {checkpoint} does not match the model of this '
            f'config: {_mismatch(report, limit=5)}.'
            f'{fusion_hint(model, report.unexpected_keys)}')
