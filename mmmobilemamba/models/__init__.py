"""MobileMamba model modules (torch + mmengine only).

Bottom-up: :mod:`.bricks` (Conv-BN, FFN, DW, squeeze-excite, PatchMerging),
:mod:`.ss2d` (two-direction selective scan), :mod:`.wte_mamba` (SS2D plus
the wavelet-domain branch), :mod:`.mk_deconv` (local branch),
:mod:`.channel_split` and :mod:`.mrffi` (the token mixer), :mod:`.block`,
:mod:`.stem`, :mod:`.stage`, then :mod:`.backbones.mobilemamba`.
This is the form that trains; inference forms come from
:func:`mmmobilemamba.deploy.convert`. The classification head
(:mod:`.heads.bn_linear_head`) needs mmpretrain and is not imported here.
"""
from .backbones import MobileMamba
from .block import MobileMambaBlock
from .bricks import (FFN, ConvBN, DropPath, DWConv, PatchMerging,
                     ResidualDWConv, SqueezeExcite)
from .channel_split import ChannelSplit, split_channels
from .mk_deconv import MKDeConv
from .mrffi import MRFFI
from .ss2d import SS2D, set_scan_backend
from .stage import Downsample, MobileMambaStage
from .stem import Stem
from .wte_mamba import WTEMamba

__all__ = [
    'MobileMamba', 'MobileMambaBlock', 'ConvBN', 'DWConv', 'FFN', 'DropPath',
    'PatchMerging', 'ResidualDWConv', 'SqueezeExcite', 'ChannelSplit',
    'split_channels', 'MKDeConv', 'MRFFI', 'SS2D', 'Downsample',
    'MobileMambaStage', 'Stem', 'WTEMamba', 'set_scan_backend'
]
