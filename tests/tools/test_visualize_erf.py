"""tools/analysis_tools/visualize_erf.py (the paper's Figure 1): MobileMamba-T2
beside a CNN peer from mmpretrain on a few generated images; and the ERF
numbers on a network whose receptive field is known exactly."""
import os.path as osp
import re

import numpy as np
import pytest
import torch
import torch.nn as nn

from ..helpers import REPO, run_tool

T2 = osp.join(REPO, 'configs', 'mobilemamba', 'mobilemamba-t2_8xb128_in1k.py')


def _peer_config() -> str:
    import mmpretrain
    path = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'configs',
                    'mobilenet_v3', 'mobilenet-v3-large_8xb128_in1k.py')
    if not osp.isfile(path):
        pytest.skip(f'mmpretrain ships no config at {path}')
    return path


def _write_images(folder, count: int = 3) -> None:
    from PIL import Image
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(count):  # different sizes: the tool resizes them
        img = rng.integers(0, 256, (70 + 10 * i, 90, 3), dtype=np.uint8)
        Image.fromarray(img).save(str(folder / f'img{i}.png'))


@pytest.mark.slow
def test_mobilemamba_vs_cnn_peer_figure(tmp_path):
    images = tmp_path / 'images'
    _write_images(images)
    out_png = str(tmp_path / 'erf.png')
    out = run_tool('tools/analysis_tools/visualize_erf.py', T2, '--compare',
                   _peer_config(), '--images', str(images), '--out', out_png,
                   '--size', '96', '--num-images', '3')
    areas = dict(re.findall(r'^(\S+): 90% of the gradient within ([\d.]+)% ',
                            out, flags=re.M))
    assert set(areas) == {'mobilemamba-t2_8xb128_in1k',
                          'mobilenet-v3-large_8xb128_in1k'}, out[-2000:]
    for name, area in areas.items():
        assert 0. < float(area) <= 100., f'{name}: {area}'
    assert f'wrote {out_png}' in out

    from PIL import Image
    with Image.open(out_png) as img:
        assert img.format == 'PNG'
        width, height = img.size
        pixels = np.asarray(img.convert('RGB'), dtype=np.float64)
    assert width > 1.5 * height  # two panels side by side
    assert pixels.std() > 10  # a drawn map, not a blank canvas


def test_missing_images_are_named(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    code, out = run_tool('tools/analysis_tools/visualize_erf.py', T2,
                         '--images', str(empty), '--out',
                         str(tmp_path / 'erf.png'), '--size', '64',
                         check=False)
    assert code != 0 and 'no .jpg/.jpeg/.png images under' in out
    assert str(empty) in out


def test_erf_of_a_known_receptive_field():
    """One 3x3 conv: the centre output sees exactly a 3x3 input window."""
    from mmmobilemamba.analysis.erf import (effective_receptive_field,
                                         high_contribution_area)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    gen = torch.Generator().manual_seed(0)
    images = [torch.randn(1, 3, 15, 15, generator=gen) for _ in range(2)]
    erf = effective_receptive_field(conv, images)
    assert erf.shape == (15, 15)
    nonzero = np.argwhere(erf > 0)
    assert nonzero.min(0).tolist() == [6, 6]
    assert nonzero.max(0).tolist() == [8, 8]
    assert high_contribution_area(erf) <= 9 / 225
    # two stacked 3x3 convs: a 5x5 window
    deeper = nn.Sequential(conv, nn.Conv2d(4, 4, 3, padding=1))
    nonzero = np.argwhere(effective_receptive_field(deeper, images) > 0)
    assert nonzero.min(0).tolist() == [5, 5]
    assert nonzero.max(0).tolist() == [9, 9]
