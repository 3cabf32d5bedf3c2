"""LoRA adapters for the weights MobileMamba keeps (docs/peft.md).

A LoRA adapter is a low-rank update of a frozen weight matrix,
``W' = W + (alpha / r) * B @ A`` with ``A`` (r, in) and ``B`` (out, r).
Here it is attached to the *weight tensor itself* as a
:mod:`torch.nn.utils.parametrize` parametrization (:class:`LoRAUpdate`):
whoever reads ``module.weight`` (the convolution's forward, SS2D's scan,
the BatchNorm folding of :func:`mmmobilemamba.deploy.convert`) gets the
adapted weight. That is why one adapter class
covers every place the weights are used, and why BN fusion of an adapted
Conv-BN folds the adapted weight (fusion and merging compose in either
order).

Which tensors take an adapter, seen as a stack of G matrices (G, out, in):

=====================================  ==================================
target                                 matrices
=====================================  ==================================
``ConvBN`` / ``nn.Conv2d`` (groups 1)  the conv weight (C', C, kh, kw) as
                                       one (C', C*kh*kw) matrix
``nn.Linear``                          its (out, in) weight
``SS2D``                               ``x_proj_weight`` (K, R+2N, d_inner)
                                       and ``dt_proj_weight`` (K, d_inner,
                                       R): one low-rank update per scan
                                       direction
=====================================  ==================================

Depthwise (and other grouped) convolutions are refused: each channel owns
one k x k filter, there is no channel-mixing matrix to factor, and in T2
all depthwise kernels together are 1.8 % of the parameters, so training
them in full (``trainable`` in :class:`~mmmobilemamba.peft.MobileMambaLoRA`)
costs less than an adapter would save.
"""
import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from ..models.bricks import ConvBN
from ..models.ss2d import SS2D

#: SS2D's projection parameters that can take an adapter.
SS2D_PROJECTIONS = ('x_proj_weight', 'dt_proj_weight')

#: Module types a target may name (for error messages).
SUPPORTED_TARGETS = ('ConvBN (not depthwise)', 'nn.Conv2d with groups=1',
                     'nn.Linear', 'SS2D',
                     'an SS2D parameter x_proj_weight / dt_proj_weight')


class LoRAUpdate(nn.Module):
    """The parametrization ``W -> W + (alpha / r) * B @ A``, per matrix.

    ``W`` is viewed as G matrices of shape (out, in) (G = 1 for a conv or
    linear weight, G = K scan directions for SS2D's projections). ``A`` is
    drawn like an ``nn.Linear`` weight (Kaiming-uniform) and ``B`` is zero,
    so the adapted weight equals ``W`` at initialisation.

    Args:
        shape (tuple[int, ...]): Shape of the adapted tensor.
        num_matrices (int): G.
        out_features (int): Rows of each matrix.
        in_features (int): Columns of each matrix.
        rank (int): r, at least 1 and at most ``min(out, in)``.
        alpha (float): Scale numerator; the update is multiplied by
            ``alpha / rank``.
        dtype (torch.dtype, optional): Of the factors. Defaults to None
            (torch's default).
        device (torch.device, optional): Of the factors. Defaults to None.
    """

    def __init__(self,
                 shape: Tuple[int, ...],
                 num_matrices: int,
                 out_features: int,
                 in_features: int,
                 rank: int,
                 alpha: float,
                 dtype: Optional[torch.dtype] = None,
                 device: Optional[torch.device] = None) -> None:
        super().__init__()
        check_rank_alpha(rank, alpha)
        if num_matrices * out_features * in_features != math.prod(shape):
            raise ValueError(f'{num_matrices} matrices of {out_features}x'
                             f'{in_features} do not tile a tensor of shape '
                             f'{tuple(shape)}')
        limit = min(out_features, in_features)
        if rank > limit:
            raise ValueError(
                f'LoRA rank {rank} exceeds min(out, in) = {limit} of the '
                f'{out_features}x{in_features} matrices of a {tuple(shape)} '
                'weight: the update would not be low-rank. Give this target '
                f'a rank of at most {limit} (a per-target `rank` key)')
        self.shape = tuple(shape)
        self.rank = rank
        self.alpha = float(alpha)
        self.scaling = self.alpha / rank
        factory = dict(dtype=dtype, device=device)
        self.lora_A = nn.Parameter(
            torch.empty(num_matrices, rank, in_features, **factory))
        self.lora_B = nn.Parameter(
            torch.zeros(num_matrices, out_features, rank, **factory))
        for a in self.lora_A:  # each matrix as nn.Linear draws its weight
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))

    def delta(self) -> torch.Tensor:
        """The update ``(alpha / r) * B @ A`` in the adapted tensor's shape."""
        return (torch.matmul(self.lora_B, self.lora_A) *
                self.scaling).reshape(self.shape)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta()

    def extra_repr(self) -> str:
        g, r, n = self.lora_A.shape
        return (f'matrices={g}, out={self.lora_B.shape[1]}, in={n}, '
                f'rank={r}, alpha={self.alpha:g}')


def check_rank_alpha(rank, alpha) -> None:
    """Raise ``ValueError`` unless rank is an int >= 1 and alpha > 0."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f'LoRA rank must be an int >= 1, got {rank!r}')
    if isinstance(alpha, bool) or not isinstance(
            alpha, (int, float)) or not alpha > 0:
        raise ValueError(f'LoRA alpha must be a number > 0, got {alpha!r}')


def _conv_weight(conv: nn.Module, name: str) -> Tuple[nn.Module, str]:
    """The (module, tensor) of a conv that can take an adapter."""
    if isinstance(conv, nn.Conv2d) and conv.groups != 1:
        groups = conv.groups
        raise TypeError(
            f'{name} is a grouped/depthwise convolution (groups={groups}); '
            'LoRA adapters are not supported there: each channel owns one '
            'k x k filter, there is no channel-mixing matrix to factor, and '
            'the depthwise kernels are a small share of the parameters. '
            'Train them in full instead (the `trainable` key)')
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f'{name}: expected a Conv2d, got '
                        f'{type(conv).__name__}')
    return conv, 'weight'


def lora_tensors(module: nn.Module, name: str) -> List[Tuple[nn.Module, str]]:
    """The tensors an adapter goes on when a target names ``module``.

    Args:
        module (nn.Module): The module a target pattern matched.
        name (str): Its name in the model, for messages.

    Returns:
        list[tuple[nn.Module, str]]: (owner module, tensor name) pairs.

    Raises:
        TypeError: For a module type adapters do not support (the message
            names the type and what is supported).
    """
    from ..deploy.forms.fused import FusedConv
    if isinstance(module, (ConvBN, FusedConv)):
        return [_conv_weight(module.conv, f'{name}.conv')]
    if isinstance(module, nn.Conv2d):
        return [_conv_weight(module, name)]
    if isinstance(module, nn.Linear):
        return [(module, 'weight')]
    if isinstance(module, SS2D):
        return [(module, p) for p in SS2D_PROJECTIONS]
    raise TypeError(f'LoRA target {name!r} is a {type(module).__name__}, '
                    'which takes no adapter; a target must name one of: '
                    f'{", ".join(SUPPORTED_TARGETS)}')


def matrix_view(module: nn.Module, tensor: str) -> Tuple[int, int, int]:
    """(G, out, in): how the tensor is factored (see the module docstring)."""
    weight = getattr(module, tensor)
    if isinstance(module, SS2D):
        return tuple(weight.shape)  # (K, out, in) per direction
    return 1, weight.shape[0], weight[0].numel()


def add_lora(module: nn.Module, tensor: str, rank: int,
             alpha: float) -> LoRAUpdate:
    """Attach a :class:`LoRAUpdate` to ``module.<tensor>``.

    Args:
        module (nn.Module): Owner of the tensor (from :func:`lora_tensors`).
        tensor (str): Parameter name, e.g. 'weight' or 'x_proj_weight'.
        rank (int): LoRA rank.
        alpha (float): LoRA alpha (the update is scaled by alpha / rank).

    Returns:
        LoRAUpdate: The adapter (its factors are ``lora_A`` and ``lora_B``).
    """
    if get_lora(module, tensor) is not None:
        raise ValueError(f'{type(module).__name__}.{tensor} already has a '
                         'LoRA adapter')
    weight = getattr(module, tensor)
    g, out, inp = matrix_view(module, tensor)
    update = LoRAUpdate(tuple(weight.shape), g, out, inp, rank, alpha,
                        dtype=weight.dtype, device=weight.device)
    if not parametrize.is_parametrized(module):
        # merge_lora puts the parameters back in this order (state-dict keys
        # in the base model's order)
        module._lora_param_order = list(module._parameters)
    # unsafe=True: the update keeps shape and dtype, so skip torch's
    # consistency forward at registration
    parametrize.register_parametrization(module, tensor, update, unsafe=True)
    return update


def get_lora(module: nn.Module, tensor: str) -> Optional[LoRAUpdate]:
    """The :class:`LoRAUpdate` on ``module.<tensor>``, or None."""
    if not parametrize.is_parametrized(module, tensor):
        return None
    for p in module.parametrizations[tensor]:
        if isinstance(p, LoRAUpdate):
            return p
    return None


def iter_lora(model: nn.Module):
    """Yield (module name, module, tensor name, LoRAUpdate) for every
    adapter in ``model``."""
    for name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for tensor in list(module.parametrizations.keys()):
            update = get_lora(module, tensor)
            if update is not None:
                yield name, module, tensor, update
