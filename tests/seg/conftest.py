"""Fixtures of the segmentation tests: a tiny ADE20K-format dataset."""
import pytest


@pytest.fixture(scope='session')
def tiny_ade20k(tmp_path_factory):
    """8 training / 3 validation scenes of 120-180 px (ADE20K layout)."""
    from mmmobilemamba.data_gen import make_ade20k
    root = str(tmp_path_factory.mktemp('ADEChallengeData2016'))
    make_ade20k(root, num_train=8, num_val=3, size_range=(120, 180), seed=0)
    return root
