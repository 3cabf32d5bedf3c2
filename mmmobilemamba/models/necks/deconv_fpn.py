"""FPN for backbones whose first feature map is already coarse (stride 16).

MobileMamba's dense-prediction features sit at strides 16, 32 and 64, while
detectors' heads expect finer levels (stride 8, and stride 4 for Mask R-CNN).
:class:`DeconvFPN` is a feature pyramid that builds those finer levels by
learned upsampling instead of asking the backbone for them:

1. the usual FPN on the backbone levels: a 1x1 lateral conv per level, then
   the top-down path (nearest upsampling of the coarser fused level, added to
   the finer lateral);
2. a chain of 2x2 stride-2 transposed convolutions (no norm, no activation)
   starting from the *fused* finest level (stride 16): each one halves the
   stride (16 -> 8 -> 4 ...);
3. a 3x3 output conv on every level, the new fine ones included;
4. optionally extra coarse levels beyond the backbone's (max pooling or
   stride-2 3x3 convs, as in the classic FPN), e.g. stride 128 for RetinaNet.

Outputs are ordered fine to coarse: ``num_deconvs`` upsampled levels, one per
backbone level, then the extra levels.

Only torch and mmengine are needed: the module is registered in mmdet's
``MODELS`` by :mod:`mmmobilemamba.registry`.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

_EXTRA_SOURCES = ('on_input', 'on_lateral', 'on_output')


class DeconvFPN(BaseModule):
    """Feature pyramid with transposed-conv levels below the finest input.

    Args:
        in_channels (Sequence[int]): Channels of each input level, fine to
            coarse, e.g. ``(200, 376, 448)`` for MobileMamba-B1 with
            ``out_indices=(1, 2, 3)``. Consecutive levels must differ by a
            stride of 2.
        out_channels (int): Channels of every output level.
        num_outs (int): Number of output levels. Must be at least
            ``num_deconvs + len(in_channels)``; any further levels are extra
            coarse levels (see ``add_extra_convs``).
        num_deconvs (int): Number of chained 2x2 stride-2 transposed convs
            applied to the fused finest level; each adds one output level at
            half the stride of the previous finest. 0 gives a plain FPN.
            Defaults to 2 (strides 4 and 8 from a stride-16 input).
        add_extra_convs (bool | str): How extra coarse levels are made.
            False: max pooling (kernel 1, stride 2) of the last output.
            True or 'on_input': a stride-2 3x3 conv on the last backbone
            input; 'on_lateral': on the last fused lateral; 'on_output': on
            the last output. Further extra levels chain stride-2 3x3 convs on
            the previous extra level. Defaults to False.
        relu_before_extra_convs (bool): Apply ReLU before each extra conv
            after the first. Defaults to False.
        upsample_mode (str): ``F.interpolate`` mode of the top-down path.
            Defaults to 'nearest'.
        init_cfg (dict | list[dict], optional): Initialisation config.
            Defaults to Xavier-uniform on convs and transposed convs.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        num_outs: int,
        num_deconvs: int = 2,
        add_extra_convs: Union[bool, str] = False,
        relu_before_extra_convs: bool = False,
        upsample_mode: str = 'nearest',
        init_cfg: Optional[Union[dict, List[dict]]] = dict(
            type='Xavier',
            layer=['Conv2d', 'ConvTranspose2d'],
            distribution='uniform')
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels = list(in_channels) if isinstance(
            in_channels, (list, tuple)) else in_channels
        if not isinstance(in_channels, list) or not in_channels or any(
                not isinstance(c, int) or c <= 0 for c in in_channels):
            raise ValueError('in_channels must be a non-empty sequence of '
                             f'positive ints, got {in_channels!r}')
        if not isinstance(out_channels, int) or out_channels <= 0:
            raise ValueError(
                f'out_channels must be a positive int, got {out_channels!r}')
        if not isinstance(num_deconvs, int) or num_deconvs < 0:
            raise ValueError('num_deconvs must be a non-negative int, got '
                             f'{num_deconvs!r}')
        num_base = num_deconvs + len(in_channels)
        if not isinstance(num_outs, int) or num_outs < num_base:
            raise ValueError(
                f'num_outs={num_outs!r} is smaller than num_deconvs '
                f'({num_deconvs}) + number of inputs ({len(in_channels)}) '
                f'= {num_base}')
        if add_extra_convs is True:
            add_extra_convs = 'on_input'
        if add_extra_convs is not False and \
                add_extra_convs not in _EXTRA_SOURCES:
            raise ValueError('add_extra_convs must be a bool or one of '
                             f'{_EXTRA_SOURCES}, got {add_extra_convs!r}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.num_deconvs = num_deconvs
        self.num_extra = num_outs - num_base
        self.add_extra_convs = add_extra_convs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.upsample_mode = upsample_mode

        self.lateral_convs = nn.ModuleList(
            nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1)
            for _ in in_channels)
        # Finest-first after the chain: deconvs[0] makes stride s/2 from the
        # fused stride-s level, deconvs[1] stride s/4 from that, ...
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(out_channels, out_channels, 2, stride=2)
            for _ in range(num_deconvs))
        self.deconv_out_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1)
            for _ in range(num_deconvs))
        self.extra_convs = nn.ModuleList()
        if self.add_extra_convs:
            for i in range(self.num_extra):
                src = in_channels[-1] if (
                    i == 0 and self.add_extra_convs == 'on_input') \
                    else out_channels
                self.extra_convs.append(
                    nn.Conv2d(src, out_channels, 3, stride=2, padding=1))

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor]:
        """Build the pyramid.

        Args:
            inputs (Sequence[Tensor]): One NCHW map per ``in_channels`` entry,
                fine to coarse.

        Returns:
            tuple[Tensor]: ``num_outs`` maps with ``out_channels`` channels,
            fine to coarse.
        """
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'DeconvFPN expects {len(self.in_channels)} '
                             f'input levels, got {len(inputs)}')
        for i, (x, c) in enumerate(zip(inputs, self.in_channels)):
            if x.dim() != 4 or x.shape[1] != c:
                raise ValueError(f'input level {i} must be (N, {c}, H, W), '
                                 f'got {tuple(x.shape)}')
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            # size= rather than scale_factor=2: odd input sizes round up
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[2:],
                mode=self.upsample_mode)

        fine = []
        x = laterals[0]
        for deconv in self.deconvs:
            x = deconv(x)
            fine.append(x)
        # fine[k] has stride s / 2^(k+1): reverse to fine-to-coarse order
        outs = [conv(f) for conv, f in zip(self.deconv_out_convs, fine)][::-1]
        outs += [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)]

        if self.num_extra:
            if not self.add_extra_convs:
                for _ in range(self.num_extra):
                    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            else:
                src = {
                    'on_input': inputs[-1],
                    'on_lateral': laterals[-1],
                    'on_output': outs[-1]
                }[self.add_extra_convs]
                outs.append(self.extra_convs[0](src))
                for conv in self.extra_convs[1:]:
                    prev = outs[-1]
                    if self.relu_before_extra_convs:
                        prev = F.relu(prev)
                    outs.append(conv(prev))
        return tuple(outs)
