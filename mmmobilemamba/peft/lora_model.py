"""The LoRA wrapper model: target selection, what trains, checkpoint keys.

:class:`MobileMambaLoRA` takes the arguments of mmpretrain's ``LoRAModel``
(``module``, ``alpha``, ``rank``, ``drop_rate``, ``targets``) so that a
config reads the same, and adds the adapters of
:mod:`mmmobilemamba.peft.lora_layers` (Conv-BN, 1x1/dense convs, Linear,
SS2D projections) plus config keys for the other parameters that train.
Registered in the MODELS registries of mmpretrain, mmdet and mmseg
(:mod:`mmmobilemamba.registry`), so it wraps a classifier, a detector or a
segmentor alike. docs/peft.md has the walk-through.
"""
import re
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule

from ..models.ss2d import SS2D
from .lora_layers import (SS2D_PROJECTIONS, add_lora, check_rank_alpha,
                          lora_tensors)

#: Keys a target dict may have.
TARGET_KEYS = ('type', 'rank', 'alpha', 'drop_rate')
#: SS2D parameters trained by ``train_scan_params``.
SCAN_PARAMS = ('A_logs', 'Ds', 'dt_proj_bias')
#: Key (at the wrapper's level) of the base-weights fingerprint in a LoRA
#: checkpoint.
FINGERPRINT_KEY = 'lora_base_fingerprint'
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


def name_matches(pattern: str, name: str) -> bool:
    """mmpretrain's target rule, at a dot boundary: ``pattern`` matches
    ``name`` as a full regular expression or as a dotted suffix
    (``'proj'`` matches ``'a.proj'`` but not ``'a.in_proj'``).

    Raises:
        ValueError: If ``pattern`` is not a valid regular expression.
    """
    if name == pattern or name.endswith('.' + pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error as err:
        raise ValueError(f'name pattern {pattern!r} is not a valid regular '
                         f'expression: {err}') from None


def _examples(names: Iterable[str], limit: int = 6) -> str:
    names = [n for n in names if n]
    return ', '.join(names[:limit]) + (', ...' if len(names) > limit else '')


def _base_key(key: str) -> bool:
    """Whether a parameter name is the frozen original of an adapted
    tensor (``...parametrizations.<tensor>.original``)."""
    return '.parametrizations.' in key and key.endswith('.original')


class MobileMambaLoRA(BaseModule):
    """Low-rank adaptation of a MobileMamba model (classifier, detector,
    segmentor), compatible with mmpretrain's ``LoRAModel`` config style.

    Build order: the wrapped ``module`` is built and initialised (its
    ``init_cfg``s load the pretrained weights, e.g. the backbone's
    ``Pretrained`` checkpoint), then the adapters are attached (zero update:
    the wrapped model computes exactly what the base model does), then
    everything is frozen except the adapters and the parameters the config
    names. BatchNorms whose parameters are frozen stay in eval mode while
    training, so their statistics do not drift either.

    The state dict holds **only what trains**: the adapter factors, the
    parameters named by ``trainable`` / ``train_norms`` /
    ``train_scan_params``, the buffers of modules with trained parameters
    (BatchNorm statistics), and a fingerprint of the frozen base weights.
    Keys are the base model's (``backbone...``, ``head...``; an adapter is
    ``<module>.parametrizations.<tensor>.0.lora_A`` / ``lora_B``), so a
    Runner checkpoint of this model is an adapter-only checkpoint, which
    loads onto the base weights the config's ``init_cfg`` gives; loading it
    onto other base weights raises. :func:`~mmmobilemamba.peft.merge_lora`
    folds the adapters into the weights and returns the plain model.

    Args:
        module (dict | nn.Module): Config of the model to adapt, or a built
            model (used as it is: not re-initialised).
        alpha (float, optional): LoRA alpha; each update is scaled by
            ``alpha / rank``. None means each target's rank (scale 1).
            Defaults to None.
        rank (int): LoRA rank of every target without its own ``rank``.
            Defaults to 4.
        drop_rate (float): Only 0 is accepted (kept for mmpretrain
            compatibility): the adapters here update the weight tensor
            itself, so there is no separate branch input to drop.
            Defaults to 0.
        targets (Sequence[dict]): ``dict(type=PATTERN, rank=..., alpha=...)``
            each; PATTERN is a regular expression (full match) or a dotted
            suffix of module names (as mmpretrain's ``LoRAModel``), or of
            SS2D parameter names (``....ss2d.x_proj_weight``). A matched
            module must be a ``ConvBN``, a ``Conv2d`` with groups=1, a
            ``Linear`` or an ``SS2D``
            (:func:`~mmmobilemamba.peft.lora_layers.lora_tensors`). A
            tensor reached by several targets takes the first one's.
        trainable (Sequence[str]): Name patterns (same rule) of modules or
            parameters that train in full, e.g. ``('head', )`` or
            ``('neck', 'bbox_head')``. Defaults to ().
        train_norms (bool): Also train every normalization layer's affine
            parameters (and update BatchNorm statistics). Defaults to False.
        train_scan_params (bool): Also train SS2D's ``A_logs``, ``Ds`` and
            ``dt_proj_bias``. Defaults to False.
        data_preprocessor (dict, optional): The config's top-level data
            preprocessor, which the Runner passes to the model it builds;
            it goes to ``module`` unless that has its own. Defaults to None.
        init_cfg (dict, optional): Unused (the wrapped module initialises
            itself); kept for the BaseModule interface. Defaults to None.

    Example:
        >>> model = dict(
        ...     type='MobileMambaLoRA',
        ...     module=dict(type='ImageClassifier', ...),
        ...     rank=8,
        ...     targets=[dict(type=r'backbone\\..*\\.(pw1|pw2)'),
        ...              dict(type='ss2d', rank=4)],
        ...     trainable=['head'])
    """

    def __init__(self,
                 module: Union[dict, nn.Module],
                 alpha: Optional[float] = None,
                 rank: int = 4,
                 drop_rate: float = 0.,
                 targets: Sequence[dict] = (),
                 trainable: Sequence[str] = (),
                 train_norms: bool = False,
                 train_scan_params: bool = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        # None: alpha = rank of each target (scale 1 whatever the rank)
        self._alpha_arg = alpha
        alpha = rank if alpha is None else alpha
        check_rank_alpha(rank, alpha)
        if drop_rate:
            raise ValueError(
                f'drop_rate={drop_rate}: MobileMambaLoRA adapters update the '
                'weight tensor (W + BA), there is no branch input to drop; '
                'use drop_rate=0')
        if not targets:
            raise ValueError('MobileMambaLoRA needs at least one target, e.g. '
                             "targets=[dict(type='ss2d')]")
        if isinstance(trainable, str):
            trainable = (trainable, )
        if isinstance(module, dict):
            from mmengine.registry import MODELS
            if data_preprocessor is not None:
                # the Runner hands the config's top-level data_preprocessor
                # to the model it builds; it belongs to the wrapped one
                module = dict(module)
                module.setdefault('data_preprocessor', data_preprocessor)
            module = MODELS.build(module)
            if hasattr(module, 'init_weights'):
                # the base weights (init_cfg) go in before the adapters, and
                # at build time, so that tools/test.py finds them too
                module.init_weights()
        elif not isinstance(module, nn.Module):
            raise TypeError(f'module must be a config dict or an nn.Module, '
                            f'got {type(module).__name__}')
        self.model = module
        self.rank, self.alpha = rank, alpha
        self.targets = [dict(t) for t in targets]
        self.trainable = tuple(trainable)
        self.train_norms = train_norms
        self.train_scan_params = train_scan_params

        self.adapted = self._apply_targets()
        self._set_trainable()
        # fixed now: a deep copy with everything frozen (mmengine's EMA
        # model) must keep the same state-dict keys
        self._state_keys = frozenset(self._find_trained_state_keys())
        self.register_buffer(FINGERPRINT_KEY, self.base_fingerprint(),
                             persistent=False)
        self._register_hooks()
        trained = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for n, p in self.named_parameters()
                    if '.lora_' not in n)
        print_log(f'MobileMambaLoRA: {len(self.adapted)} adapted tensors, '
                  f'{trained} trainable of {total} base parameters '
                  f'({100 * trained / max(total, 1):.2f} %)', logger='current')

    # ------------------------------------------------------------------
    # Targets and what trains
    # ------------------------------------------------------------------
    @classmethod
    def for_scope(cls, scope: str):
        """What toolbox ``scope``'s MODELS registry holds under this class's
        name (:mod:`mmmobilemamba.registry`): a build function that
        constructs the wrapper with ``scope`` as the default scope.

        The wrapped module's config (``type='ImageClassifier'``,
        ``'RetinaNet'``, ...) is built through mmengine's root registry,
        which finds the toolbox's classes only under a default scope;
        ``mmdet.registry.MODELS.build(cfg.model)`` of a LoRA config set none
        ("ImageClassifier is not in the mmengine::model registry").
        """

        def build(*args, **kwargs):
            from mmengine.registry import DefaultScope
            with DefaultScope.overwrite_default_scope(scope):
                return cls(*args, **kwargs)

        build.__name__ = build.__qualname__ = cls.__name__
        build.__module__, build.__doc__ = cls.__module__, cls.__doc__
        return build

    def _candidates(self) -> List[Tuple[str, nn.Module, Optional[str]]]:
        """Names a target may match: modules, and SS2D projection tensors
        (name, module, tensor or None)."""
        out = []
        for name, module in self.model.named_modules():
            if not name or '.parametrizations' in name:
                continue
            out.append((name, module, None))
            if isinstance(module, SS2D):
                out += [(f'{name}.{p}', module, p) for p in SS2D_PROJECTIONS]
        return out

    def _apply_targets(self) -> List[str]:
        candidates = self._candidates()
        done: Dict[Tuple[int, str], str] = {}
        adapted = []
        for target in self.targets:
            unknown = set(target) - set(TARGET_KEYS)
            if 'type' not in target or unknown:
                raise KeyError(f'LoRA target {target}: needs `type` (a name '
                               f'pattern); allowed keys are {TARGET_KEYS}'
                               + (f', unknown: {sorted(unknown)}'
                                  if unknown else ''))
            if target.get('drop_rate'):
                raise ValueError(f'LoRA target {target}: drop_rate must be 0 '
                                 '(see MobileMambaLoRA)')
            pattern = target['type']
            rank = target.get('rank', self.rank)
            alpha = target.get('alpha', rank if self._alpha_arg is None
                               else self._alpha_arg)
            check_rank_alpha(rank, alpha)
            matched = [(n, m, t) for n, m, t in candidates
                       if name_matches(pattern, n)]
            if not matched:
                raise ValueError(
                    f'LoRA target pattern {pattern!r} matches no module of '
                    f'{type(self.model).__name__}; module names look like: '
                    f'{_examples([n for n, _, t in candidates if t is None])}')
            for name, module, tensor in matched:
                pairs = ([(module, tensor)] if tensor is not None else
                         lora_tensors(module, name))
                for owner, tname in pairs:
                    key = (id(owner), tname)
                    if key in done:
                        continue  # the first target reaching it decides
                    add_lora(owner, tname, rank, alpha)
                    full = self._name_of(owner) + '.' + tname
                    done[key] = full
                    adapted.append(full)
        return adapted

    def _name_of(self, module: nn.Module) -> str:
        for name, m in self.model.named_modules():
            if m is module:
                return name
        raise ValueError('module is not part of the wrapped model')

    def _set_trainable(self) -> None:
        chosen: Set[str] = set()
        params = dict(self.model.named_parameters())
        modules = dict(self.model.named_modules())
        for pattern in self.trainable:
            hits = [n for n in params if name_matches(pattern, n)]
            for mname, _ in modules.items():
                if mname and name_matches(pattern, mname):
                    hits += [n for n in params if n.startswith(mname + '.')]
            if not hits:
                raise ValueError(
                    f'trainable pattern {pattern!r} matches no module or '
                    f'parameter of {type(self.model).__name__}; module names '
                    f'look like: {_examples(list(modules))}')
            chosen.update(hits)
        for mname, module in modules.items():
            prefix = mname + '.' if mname else ''
            if self.train_norms and isinstance(module, _NORMS):
                chosen.update(prefix + n for n, _ in
                              module.named_parameters(recurse=False))
            if self.train_scan_params and isinstance(module, SS2D):
                chosen.update(prefix + n for n in SCAN_PARAMS)
        # an adapter's own factors are not "trained in full"
        chosen = {n for n in chosen if '.lora_' not in n}
        both = sorted(n for n in chosen if _base_key(n))
        if both:
            raise ValueError(
                f'{both[:3]} would be both LoRA-adapted and trained in full '
                '(a `trainable` pattern or train_norms covers an adapted '
                'tensor); narrow the target or the trainable pattern')
        for name, param in params.items():
            param.requires_grad = name in chosen or '.lora_' in name

    def base_fingerprint(self) -> torch.Tensor:
        """(sum, sum of squares) of every frozen parameter, in float64: a
        LoRA checkpoint remembers the base it was trained on."""
        total = torch.zeros(2, dtype=torch.float64)
        with torch.no_grad():
            for param in self.model.parameters():
                if not param.requires_grad:
                    p = param.detach().double().cpu()
                    total += torch.stack([p.sum(), (p * p).sum()])
        return total

    def trained_state_keys(self) -> Set[str]:
        """State-dict keys (the wrapped model's names) that the LoRA
        checkpoint holds: the parameters that train and the buffers of the
        modules that own them (e.g. BatchNorm statistics), as set at
        construction."""
        return set(self._state_keys)

    def _find_trained_state_keys(self) -> Set[str]:
        keys = set()
        for mname, module in self.model.named_modules():
            own = list(module.named_parameters(recurse=False))
            if not any(p.requires_grad for _, p in own):
                continue
            prefix = mname + '.' if mname else ''
            keys.update(prefix + n for n, p in own if p.requires_grad)
            skip = module._non_persistent_buffers_set
            keys.update(prefix + n for n, b in
                        module.named_buffers(recurse=False)
                        if n not in skip and b is not None)
        return keys

    # ------------------------------------------------------------------
    # State dict: only what trains, under the base model's keys
    # ------------------------------------------------------------------
    def _register_hooks(self) -> None:
        self._register_state_dict_hook(_save_trained_only)
        self._register_load_state_dict_pre_hook(_load_pre_hook,
                                                with_module=True)
        self.register_load_state_dict_post_hook(_load_post_hook)

    # ------------------------------------------------------------------
    # The Runner's view: the wrapped model
    # ------------------------------------------------------------------
    def init_weights(self) -> None:
        """Nothing to do: the wrapped model was initialised (pretrained
        weights included) before the adapters were attached."""
        self._is_init = True

    def train(self, mode: bool = True) -> 'MobileMambaLoRA':
        """Set train mode; BatchNorms with frozen parameters stay in eval
        mode (their statistics are part of the frozen base)."""
        super().train(mode)
        if mode:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and \
                        not any(p.requires_grad
                                for p in module.parameters(recurse=False)):
                    module.eval()
        return self

    def to(self, *args, **kwargs) -> 'MobileMambaLoRA':
        # the wrapped BaseModel's .to() also moves its data preprocessor's
        # device attribute
        self.model.to(*args, **kwargs)
        return super().to(*args, **kwargs)

    def cuda(self, *args, **kwargs) -> 'MobileMambaLoRA':
        self.model.cuda(*args, **kwargs)
        return super().cuda(*args, **kwargs)

    def cpu(self) -> 'MobileMambaLoRA':
        self.model.cpu()
        return super().cpu()

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str):
        # train_step, val_step, data_preprocessor, backbone, ... of the
        # wrapped model (as mmpretrain's LoRAModel does)
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == 'model':
                raise
            return getattr(super().__getattr__('model'), name)

    def extra_repr(self) -> str:
        return (f'rank={self.rank}, alpha={self.alpha:g}, '
                f'adapted={len(self.adapted)}, trainable={self.trainable}, '
                f'train_norms={self.train_norms}, '
                f'train_scan_params={self.train_scan_params}')


def _save_trained_only(module: MobileMambaLoRA, state_dict, prefix: str,
                       local_metadata) -> None:
    """State-dict hook: keep the trained keys, named as in the base model
    (``model.`` dropped), plus the base fingerprint. In place: a parent
    module ignores a returned dict."""
    inner = prefix + 'model.'
    keep = module.trained_state_keys()
    for key in [k for k in state_dict if k.startswith(prefix)]:
        value = state_dict.pop(key)
        if key.startswith(inner) and key[len(inner):] in keep:
            state_dict[prefix + key[len(inner):]] = value
    state_dict[prefix + FINGERPRINT_KEY] = getattr(
        module, FINGERPRINT_KEY).clone()


def _load_pre_hook(module: MobileMambaLoRA, state_dict, prefix: str,
                   local_metadata, strict, missing_keys, unexpected_keys,
                   error_msgs) -> None:
    """Load pre-hook: check the base fingerprint, put ``model.`` back."""
    module._load_prefix = prefix
    fingerprint = state_dict.pop(prefix + FINGERPRINT_KEY, None)
    if fingerprint is not None:
        own = getattr(module, FINGERPRINT_KEY)
        if not torch.allclose(fingerprint.to(own), own, rtol=1e-6,
                              atol=0.):
            raise ValueError(
                'this LoRA checkpoint was trained on other base weights than '
                'the ones this model was built on (fingerprint '
                f'{fingerprint.tolist()} vs {own.tolist()}): point the '
                "config's init_cfg at the base checkpoint it was trained "
                'from, with the same trainable settings')
    inner = prefix + 'model.'
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if not key.startswith(inner):
            state_dict[inner + key[len(prefix):]] = state_dict.pop(key)


def _load_post_hook(module: MobileMambaLoRA, incompatible_keys) -> None:
    """Frozen base weights are expected to be absent from a LoRA state."""
    inner = getattr(module, '_load_prefix', '') + 'model.'
    keep = module.trained_state_keys()
    for key in list(incompatible_keys.missing_keys):
        if key.startswith(inner) and key[len(inner):] not in keep:
            incompatible_keys.missing_keys.remove(key)


__all__ = ['MobileMambaLoRA', 'name_matches']
