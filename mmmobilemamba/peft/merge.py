"""Fold LoRA adapters into the base weights for deployment.

After :func:`merge_lora` the model is the plain model: the same module
classes (so the same latency), the same state-dict keys as the base model,
and (in fp32) the outputs of the adapted model to rounding. It composes
with BN fusion in either order:

* merge, then ``mmmobilemamba.deploy.convert(model, 'fused')`` (what
  ``tools/model_converters/merge_lora.py`` followed by
  ``tools/deployment/fuse_bn.py`` does): the adapted weight ``W + BA``
  becomes the conv weight, then the BN is folded into it;
* fuse, then merge: folding a Conv-BN reads ``conv.weight``, which is the
  adapted weight (the adapter is a parametrization of that tensor), so the
  fold takes the adapter with it; the adapters that fusion does not touch
  (SS2D's projections, Linear layers) are merged here.
"""
import torch
from torch import nn

from .lora_layers import iter_lora
from .lora_model import MobileMambaLoRA


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA adapter of ``model`` into its weight, in place.

    Args:
        model (nn.Module): A :class:`MobileMambaLoRA` (the wrapped model is
            returned) or any model with adapters attached.

    Returns:
        nn.Module: The plain model, every parameter trainable again (as a
        freshly built model), in the mode ``model`` was in.

    Raises:
        ValueError: If ``model`` has no adapter at all (most likely the wrong
            model, or merged already).
    """
    from mmengine.model import is_model_wrapper
    if is_model_wrapper(model):  # DDP and the like
        model = model.module
    training = model.training
    inner = model.model if isinstance(model, MobileMambaLoRA) else model
    found = list(iter_lora(inner))
    if not found:
        raise ValueError(f'{type(inner).__name__} has no LoRA adapter to '
                         'merge (merged already, or not a LoRA model)')
    per_module = {}
    with torch.no_grad():
        for _, module, tensor, _ in found:
            value = getattr(module, tensor).detach().clone()
            per_module.setdefault(module, []).append((tensor, value))
    for module, values in per_module.items():
        _unparametrize(module, dict(values))
    for param in inner.parameters():
        param.requires_grad = True
    return inner.train(training)


def _unparametrize(module: nn.Module, values: dict) -> None:
    """Give each adapted tensor of ``module`` its merged value as a plain
    Parameter (``values``: tensor name -> merged value).

    Not torch's ``remove_parametrizations``: that deletes the tensor's
    property from the module's class, and a deep copy of a parametrized
    module shares its class with the original (``fuse_bn.py`` and the EMA
    hook deep-copy models), so it would break the other copy. Here the
    instance gets its base class back and the shared class is left alone.
    """
    plists = module.parametrizations
    others = sorted(set(plists.keys()) - set(values))
    extra = [name for name in values if len(plists[name]) != 1]
    if others or extra:
        raise NotImplementedError(
            f'{type(module).__name__} has parametrizations besides its LoRA '
            f'adapters (on {others + extra}); remove them before merging')
    originals = {name: plists[name].original for name in values}
    del module._modules['parametrizations']
    # torch derives Parametrized<Class> from the module's own class
    module.__class__ = module.__class__.__bases__[0]
    for name, original in originals.items():
        with torch.no_grad():
            # an in-place copy bumps the tensor's version, so anything
            # cached by (tensor, version) (e.g. a packed deploy weight) is
            # recomputed
            original.copy_(values[name])
        module.register_parameter(name, original)
    order = module.__dict__.pop('_lora_param_order', None)
    if order is not None:
        params = module._parameters
        rank = {name: i for i, name in enumerate(order)}
        items = sorted(params.items(), key=lambda kv: rank.get(kv[0], 1e9))
        params.clear()
        params.update(items)
