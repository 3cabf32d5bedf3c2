"""MobileMamba backbone (docs/architecture.md#overview), NCHW features.

Registered in the MODELS registries of mmpretrain, mmdet and mmseg by
:mod:`mmmobilemamba.registry`; this file needs only torch and mmengine.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from ...checkpoint import LoadReport, load_checkpoint, load_state_dict
from ..stage import MobileMambaStage
from ..ss2d import set_scan_backend
from ..stem import Stem

#: Width and depth of each released variant (docs/architecture.md#variants).
#: B1, B2 and B4 are one network trained at 256, 384 and 512 px.
arch_settings: Dict[str, dict] = {
    't2': dict(embed_dims=(144, 272, 368), depths=(1, 2, 2),
               drop_path_rate=0.),
    't4': dict(embed_dims=(176, 368, 448), depths=(1, 2, 2),
               drop_path_rate=0.),
    's6': dict(embed_dims=(192, 384, 448), depths=(1, 2, 2),
               drop_path_rate=0.),
    'b1': dict(embed_dims=(200, 376, 448), depths=(2, 3, 2),
               drop_path_rate=0.03),
    'b2': dict(embed_dims=(200, 376, 448), depths=(2, 3, 2),
               drop_path_rate=0.03),
    'b4': dict(embed_dims=(200, 376, 448), depths=(2, 3, 2),
               drop_path_rate=0.03),
}

#: Settings shared by every variant; an arch dict may override them.
common_settings: Dict[str, object] = dict(
    kernel_sizes=(7, 5, 3),
    global_ratios=(0.8, 0.7, 0.6),
    local_ratios=(0.2, 0.2, 0.3),
    ffn_ratio=2,
    ssm_ratio=2,
    d_state=1,
    drop_path_rate=0.,
)

_PER_STAGE = ('embed_dims', 'depths', 'kernel_sizes', 'global_ratios',
              'local_ratios')
_ARCH_KEYS = set(_PER_STAGE) | set(common_settings)
_NUM_STAGES = 3
#: Inputs below this size leave stage 3 nothing to work on.
MIN_INPUT_SIZE = 32


def resolve_arch(arch: Union[str, dict]) -> dict:
    """Full architecture settings from a variant name or a dict.

    Args:
        arch (str | dict): A name in ``arch_settings`` (case-insensitive) or a
            dict with at least ``embed_dims`` and ``depths`` (three values
            each) and optionally any key of ``common_settings``.

    Returns:
        dict: Every key of ``common_settings`` plus embed_dims and depths.
    """
    if isinstance(arch, str):
        key = arch.lower()
        if key not in arch_settings:
            raise KeyError(f'unknown MobileMamba arch {arch!r}; choose one of '
                           f'{sorted(k.upper() for k in arch_settings)} or '
                           'pass a dict')
        arch = arch_settings[key]
    elif not isinstance(arch, dict):
        raise TypeError(f'arch must be a str or a dict, got '
                        f'{type(arch).__name__}')
    missing = {'embed_dims', 'depths'} - set(arch)
    unknown = set(arch) - _ARCH_KEYS
    if missing or unknown:
        raise KeyError(f'arch dict {arch}: missing keys {sorted(missing)}, '
                       f'unknown keys {sorted(unknown)}; allowed keys are '
                       f'{sorted(_ARCH_KEYS)}')
    settings = copy.deepcopy(common_settings)
    settings.update(copy.deepcopy(arch))
    for key in _PER_STAGE:
        value = settings[key]
        if len(value) != _NUM_STAGES:
            raise ValueError(f'arch {key} needs {_NUM_STAGES} values (one per '
                             f'stage), got {value}')
        settings[key] = tuple(value)
    if any(int(d) < 0 for d in settings['depths']):
        raise ValueError(f'arch depths must be >= 0, got {settings["depths"]}')
    return settings


class MobileMamba(BaseModule):
    """MobileMamba backbone.

    A stride-16 convolutional stem followed by three stages of MobileMamba
    blocks (strides 16, 32, 64), from "MobileMamba: Lightweight Multi-Receptive
    Visual Mamba Network" (CVPR 2025).

    Feature indices: 0 is the stem output (stride 16, C0 channels), 1, 2 and
    3 the outputs of the stages (strides 16, 32, 64; C0, C1, C2 channels).
    Dense prediction uses (1, 2, 3). Any input of at least 32x32 pixels
    works, odd sizes included (each stride-2 step gives ceil(n / 2)).

    Args:
        arch (str | dict): 'T2', 'T4', 'S6', 'B1', 'B2' or 'B4'
            (case-insensitive), or a dict with ``embed_dims`` and ``depths``
            (three values each) and optionally ``kernel_sizes``,
            ``global_ratios``, ``local_ratios`` (per stage), ``ffn_ratio``,
            ``ssm_ratio``, ``d_state`` and ``drop_path_rate``.
            Defaults to 'T2'.
        in_channels (int): Image channels. Defaults to 3.
        out_indices (int | Sequence[int]): Features to return (0 = stem,
            1-3 = stages; negative values count from the end).
            Defaults to (3, ).
        frozen_stages (int): Freeze the stem (0) and stages 1..n (n >= 1):
            no gradients and BatchNorm statistics kept fixed. -1 freezes
            nothing. Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode while training
            (frozen statistics), as detectors usually do. Defaults to False.
        drop_path_rate (float, optional): Stochastic-depth rate of the last
            block, linearly increasing from 0 over all blocks; None uses the
            arch's (0.03 for B*, 0 otherwise). Defaults to None.
        local_kernel_sizes (Sequence[int | Sequence[int]], optional): MRFFI
            local kernel size(s) per stage; several sizes in one stage make
            MK-DeConv truly multi-kernel, e.g. ``((3, 5, 7), (3, 5), 3)``.
            None uses the arch's single kernel per stage (7, 5, 3), the
            release's form. Defaults to None.
        with_cp (bool): Gradient checkpointing of each block (less memory,
            more compute) while training. Defaults to False.
        deploy (bool): Build the inference form for PyTorch on a CPU
            (``mmmobilemamba.deploy.convert(model, 'eager-cpu')``: BatchNorms
            folded, so a fused checkpoint loads into it, and nothing to
            train). Defaults to False.
        scan_backend (str, optional): Selective-scan backend of every SS2D
            (a name from :mod:`mmmobilemamba.ops.scan.backends`);
            None picks the fastest for the input's device. The config key
            for :func:`mmmobilemamba.models.set_scan_backend`, which
            changes it on a built model. Defaults to None.
        init_cfg (dict | list[dict], optional): Initialisation config, e.g.
            ``dict(type='Pretrained', checkpoint=PATH, prefix='backbone.')``.
            None keeps the release's initialisation (zero-initialised branches
            included; an OpenMMLab default init that sets every BN weight to
            1 would break it). Defaults to None.

    Example:
        >>> import torch
        >>> from mmmobilemamba.models import MobileMamba
        >>> model = MobileMamba('T2', out_indices=(1, 2, 3)).eval()
        >>> feats = model(torch.rand(1, 3, 192, 192))
        >>> [tuple(f.shape) for f in feats]
        [(1, 144, 12, 12), (1, 272, 6, 6), (1, 368, 3, 3)]
    """
    arch_settings = arch_settings

    def __init__(self,
                 arch: Union[str, dict] = 'T2',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (3, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 drop_path_rate: Optional[float] = None,
                 local_kernel_sizes: Optional[Sequence[Union[
                     int, Sequence[int]]]] = None,
                 with_cp: bool = False,
                 deploy: bool = False,
                 scan_backend: Optional[str] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        settings = resolve_arch(arch)
        if drop_path_rate is not None:
            settings['drop_path_rate'] = drop_path_rate
        rate = float(settings['drop_path_rate'])
        if not 0. <= rate < 1.:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {rate}')
        if local_kernel_sizes is not None:
            if len(local_kernel_sizes) != _NUM_STAGES:
                raise ValueError(f'local_kernel_sizes needs {_NUM_STAGES} '
                                 f'entries, got {local_kernel_sizes}')
            settings['kernel_sizes'] = tuple(local_kernel_sizes)
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'in_channels must be a positive int, got '
                             f'{in_channels!r}')
        self.settings = settings
        self.in_channels = in_channels
        self.embed_dims = tuple(settings['embed_dims'])
        self.out_indices = self._check_out_indices(out_indices)
        if not isinstance(frozen_stages, int) or not (
                -1 <= frozen_stages <= _NUM_STAGES):
            raise ValueError(f'frozen_stages must be an int in [-1, '
                             f'{_NUM_STAGES}], got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.deploy = deploy

        self.stem = Stem(in_channels, self.embed_dims[0])
        depths = [int(d) for d in settings['depths']]
        total = sum(depths)
        # Linear from 0 to rate over all blocks (plain floats: this also
        # builds under torch.device('meta')).
        rates = [rate * i / (total - 1) if total > 1 else 0.
                 for i in range(total)]
        self.stages = nn.ModuleList()
        widths = (self.embed_dims[0], ) + self.embed_dims
        for i in range(_NUM_STAGES):
            start = sum(depths[:i])
            self.stages.append(
                MobileMambaStage(
                    widths[i], widths[i + 1], depths[i],
                    kernel_size=settings['kernel_sizes'][i],
                    global_ratio=settings['global_ratios'][i],
                    local_ratio=settings['local_ratios'][i],
                    downsample=i > 0,
                    ffn_ratio=settings['ffn_ratio'],
                    ssm_ratio=settings['ssm_ratio'],
                    d_state=settings['d_state'],
                    drop_paths=rates[start:start + depths[i]],
                    with_cp=with_cp))
        set_scan_backend(self, scan_backend)
        if deploy:  # the inference form, which a fused checkpoint loads into
            from mmmobilemamba.deploy.convert import convert
            convert(self, 'eager-cpu', inplace=True)
        self._freeze_stages()

    @staticmethod
    def _check_out_indices(out_indices) -> Tuple[int, ...]:
        num = _NUM_STAGES + 1
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        if not isinstance(out_indices, (list, tuple)) or not out_indices:
            raise ValueError(f'out_indices must be an int or a non-empty '
                             f'sequence of ints, got {out_indices!r}')
        resolved = []
        for index in out_indices:
            if not isinstance(index, int) or not -num <= index < num:
                raise ValueError(f'out_indices entry {index!r} is out of range'
                                 f' [{-num}, {num - 1}] (0 = stem, 1-3 = '
                                 f'stages) in {out_indices}')
            resolved.append(index % num)
        if len(set(resolved)) != len(resolved):
            raise ValueError(f'out_indices {out_indices} name a feature twice')
        return tuple(sorted(resolved))

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each returned feature, in output order."""
        widths = (self.embed_dims[0], ) + self.embed_dims
        return tuple(widths[i] for i in self.out_indices)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Features at ``out_indices``, each (B, C, H, W)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'MobileMamba expects (B, {self.in_channels}, H, '
                             f'W) images, got shape {tuple(x.shape)}')
        if x.shape[-2] < MIN_INPUT_SIZE or x.shape[-1] < MIN_INPUT_SIZE:
            raise ValueError(f'MobileMamba needs inputs of at least '
                             f'{MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}, got '
                             f'{x.shape[-2]}x{x.shape[-1]}')
        x = self.stem(x)
        outs = [x] if 0 in self.out_indices else []
        for i, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.stem] + list(self.stages[:self.frozen_stages])

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'MobileMamba':
        """Set train mode, keeping frozen stages and (with ``norm_eval``)
        every BatchNorm in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    # ------------------------------------------------------------------
    # Weights from checkpoints
    # ------------------------------------------------------------------
    def init_weights(self) -> None:
        """Initialise; ``Pretrained`` init_cfgs load with a key report (see
        :func:`mmmobilemamba.checkpoint.load_state_dict`): missing and
        unexpected keys are warned about by name, and a checkpoint sharing
        no key with the backbone raises."""
        cfgs = self.init_cfg
        cfgs = [cfgs] if isinstance(cfgs, dict) else list(cfgs or [])
        pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
        if not pretrained:
            super().init_weights()
            return
        original = self.init_cfg
        self.init_cfg = [c for c in cfgs if c.get('type') != 'Pretrained']
        try:
            super().init_weights()
        finally:
            self.init_cfg = original
        for cfg in pretrained:
            if 'checkpoint' not in cfg:
                raise KeyError(f'Pretrained init_cfg {cfg} has no checkpoint')
            self.load_checkpoint(cfg['checkpoint'], prefix=cfg.get('prefix'),
                                 map_location=cfg.get('map_location', 'cpu'))

    def load_checkpoint(self,
                        filename: str,
                        prefix: Optional[str] = None,
                        map_location: str = 'cpu',
                        strict: bool = False) -> LoadReport:
        """Load weights from a checkpoint file, reporting mismatched keys
        (:func:`mmmobilemamba.checkpoint.load_checkpoint`)."""
        return load_checkpoint(self, filename, prefix=prefix,
                               map_location=map_location, strict=strict)

    def load_state_dict_report(self,
                               state_dict: Dict[str, torch.Tensor],
                               strict: bool = False,
                               source: str = 'state_dict') -> LoadReport:
        """``load_state_dict`` with a key report
        (:func:`mmmobilemamba.checkpoint.load_state_dict`)."""
        return load_state_dict(self, state_dict, strict=strict, source=source)
