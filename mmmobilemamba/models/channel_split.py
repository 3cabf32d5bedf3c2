"""How MRFFI splits its channels (docs/architecture.md#channel-split).

The global group (WTE-Mamba) is sized to a multiple of 16 (the scan kernels'
friendly width), the local group (MK-DeConv) takes a fraction of the rest,
and whatever is left passes through untouched ("eliminate redundant
identity": no compute spent on it).
"""
from typing import NamedTuple


class ChannelSplit(NamedTuple):
    """Channel counts of MRFFI's three groups, in concatenation order."""
    global_channels: int
    local_channels: int
    identity_channels: int


def split_channels(channels: int, global_ratio: float,
                   local_ratio: float) -> ChannelSplit:
    """Split ``channels`` into (global, local, identity) groups.

    global = int(global_ratio * C) rounded to the nearest multiple of 16 (a
    tie, 8 away, goes up); local = int(local_ratio * C), reduced to
    C - global if the two would exceed C; identity = the rest. ``int`` of the
    float product is deliberate: it matches the released models' widths.

    Args:
        channels (int): C.
        global_ratio (float): Share of the global group, in [0, 1].
        local_ratio (float): Share of the local group, in [0, 1].

    Returns:
        ChannelSplit: (global, local, identity), summing to C.
    """
    for name, ratio in (('global_ratio', global_ratio),
                        ('local_ratio', local_ratio)):
        if not 0. <= ratio <= 1.:
            raise ValueError(f'{name} must be in [0, 1], got {ratio}')
    if channels < 1:
        raise ValueError(f'channels must be >= 1, got {channels}')
    global_ch = (int(global_ratio * channels) + 8) // 16 * 16
    if global_ch > channels:
        raise ValueError(f'global_ratio {global_ratio} of {channels} channels '
                         f'rounds to {global_ch} > {channels} global channels')
    local_ch = int(local_ratio * channels)
    if global_ch + local_ch > channels:
        local_ch = channels - global_ch
    return ChannelSplit(global_ch, local_ch, channels - global_ch - local_ch)
