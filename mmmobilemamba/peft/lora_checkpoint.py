"""Adapter-only LoRA checkpoints: save what trained, load it onto the base.

A :class:`~mmmobilemamba.peft.MobileMambaLoRA`'s ``state_dict()`` already
holds only what trains (see its docstring), so a Runner checkpoint of a LoRA
config is an adapter-only checkpoint. These helpers do the same outside a
Runner and always read through the project's safe loader
(:func:`mmmobilemamba.checkpoint.load_checkpoint_file`).
"""
from typing import Optional

from torch import nn

from ..checkpoint import (load_checkpoint_file, load_state_dict,
                          save_checkpoint_file, state_dict_of)
from .lora_model import MobileMambaLoRA


def _check(model: nn.Module) -> MobileMambaLoRA:
    from mmengine.model import is_model_wrapper
    if is_model_wrapper(model):  # DDP and the like
        model = model.module
    if not isinstance(model, MobileMambaLoRA):
        raise TypeError(f'expected a MobileMambaLoRA model, got '
                        f'{type(model).__name__}')
    return model


def save_lora_checkpoint(model: nn.Module, filename: str,
                         meta: Optional[dict] = None) -> None:
    """Write ``{'state_dict': <trained tensors>, 'meta': ...}`` atomically.

    Args:
        model (nn.Module): The LoRA model.
        filename (str): Output path.
        meta (dict, optional): Extra meta entries. Defaults to None.
    """
    model = _check(model)
    meta = dict(meta or {})
    meta.setdefault('lora', dict(rank=model.rank, alpha=model.alpha,
                                 adapted=len(model.adapted)))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint_file(dict(state_dict=state, meta=meta), filename)


def load_lora_checkpoint(model: nn.Module, filename: str,
                         strict: bool = True):
    """Load an adapter-only checkpoint onto a LoRA model built on its base.

    The base weights are the model's own (its ``init_cfg``); the file must
    have been trained on the same ones (its fingerprint is checked).

    Args:
        model (nn.Module): The LoRA model.
        filename (str): The adapter-only checkpoint (a Runner checkpoint of
            a LoRA config works too).
        strict (bool): Raise on missing or unexpected trained keys.
            Defaults to True.

    Returns:
        LoadReport: Missing and unexpected keys (empty when strict).
    """
    model = _check(model)
    state = state_dict_of(load_checkpoint_file(filename, 'cpu'),
                          source=str(filename))
    return load_state_dict(model, state, strict=strict, source=str(filename))
