"""MRFFI channel split: the released widths are the oracle."""
import pytest

from mmmobilemamba.models import split_channels
from mmmobilemamba.models.backbones.mobilemamba import resolve_arch

# per stage (global, local, identity): docs/architecture.md#channel-split
RELEASE_TABLE = {
    'T2': [(112, 28, 4), (192, 54, 26), (224, 110, 34)],
    'T4': [(144, 32, 0), (256, 73, 39), (272, 134, 42)],
    'S6': [(160, 32, 0), (272, 76, 36), (272, 134, 42)],
    'B1': [(160, 40, 0), (256, 75, 45), (272, 134, 42)],
    'B2': [(160, 40, 0), (256, 75, 45), (272, 134, 42)],
    'B4': [(160, 40, 0), (256, 75, 45), (272, 134, 42)],
}


@pytest.mark.parametrize('arch', sorted(RELEASE_TABLE))
def test_split_matches_release_table(arch):
    settings = resolve_arch(arch)
    got = [
        tuple(split_channels(c, g, l_)) for c, g, l_ in zip(
            settings['embed_dims'], settings['global_ratios'],
            settings['local_ratios'])
    ]
    assert got == RELEASE_TABLE[arch]


def test_rounding_to_multiples_of_16_with_ties_up():
    assert split_channels(376, 0.7, 0.2).global_channels == 256  # 263 -> 256
    assert split_channels(100, 0.72, 0.).global_channels == 80  # 72: tie up
    assert split_channels(100, 0.71, 0.).global_channels == 64  # 71 -> 64


def test_local_is_capped_and_identity_may_be_empty():
    split = split_channels(176, 0.8, 0.2)  # 144 + 35 > 176
    assert split == (144, 32, 0)
    assert sum(split_channels(57, 0.3, 0.3)) == 57


def test_bad_ratios_raise():
    with pytest.raises(ValueError, match='global_ratio must be in'):
        split_channels(64, 1.5, 0.1)
    with pytest.raises(ValueError, match='local_ratio must be in'):
        split_channels(64, 0.5, -0.1)
    with pytest.raises(ValueError, match='rounds to 16 > 12'):
        split_channels(12, 1.0, 0.)
