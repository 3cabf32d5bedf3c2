"""The inference forms of the deploy targets (:mod:`..convert`).

One module per pass: :mod:`.fused` (BatchNorms folded), :mod:`.eager_cpu`
(kernels for PyTorch on a CPU at small batch) and :mod:`.portable`
(standard operators that ONNX and XNNPACK take). Each holds its form
modules and its :class:`Pass`.
"""
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Type

import torch.nn as nn
from torch.nn.utils import parametrize

#: A rule returns the replacement of a module (or the module, changed).
Rule = Callable[[nn.Module], nn.Module]


@dataclass(frozen=True)
class Pass:
    """One conversion pass.

    Args:
        name (str): For messages.
        rules (Mapping[type, Rule]): Module type -> rule; a module takes the
            rule of the first class of its MRO that has one.
        fallback (Rule, optional): Applied to modules without a rule (e.g.
            foreign ``switch_to_deploy`` modules). Defaults to None.
    """
    name: str
    rules: Mapping[Type[nn.Module], Rule]
    fallback: Optional[Rule] = field(default=None)

    def rule_for(self, module: nn.Module) -> Optional[Rule]:
        for cls in type(module).__mro__:
            if cls in self.rules:
                return self.rules[cls]
        return None

    def apply(self, module: nn.Module) -> nn.Module:
        """Convert ``module``'s subtree, children first; returns the
        converted ``module``."""
        for name, child in list(module.named_children()):
            new = self.apply(child)
            if new is not child:
                setattr(module, name, new)
        rule = self.rule_for(module)
        if rule is not None:
            return rule(module)
        return module if self.fallback is None else self.fallback(module)


def recast(module: nn.Module, cls: Type[nn.Module]) -> nn.Module:
    """Give ``module`` the class ``cls``, a subclass of its class that
    computes the same function in another form; parameters, buffers and
    state_dict keys stay. The module is changed in place and returned
    (unchanged when it already is a ``cls``)."""
    if isinstance(module, cls):
        return module
    if parametrize.is_parametrized(module):
        raise ValueError(
            f'{type(module).__name__} carries parametrizations (LoRA '
            'adapters?); fold them into the weights first '
            '(mmmobilemamba.peft.merge_lora, or '
            'tools/model_converters/merge_lora.py)')
    if not issubclass(cls, type(module)):
        raise TypeError(f'{cls.__name__} is not a form of '
                        f'{type(module).__name__}')
    module.__class__ = cls
    return module
