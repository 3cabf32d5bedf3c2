"""Parity with the authors' code (docs/architecture.md#release-parity): a
T2 state_dict in the release layout and its logits and features, produced
on CPU at batch 1 (fp32). CI has ``../shared/`` beside the clone; a user's
clone does not, and the tests skip saying so."""
import os.path as osp

import pytest
import torch

from mmmobilemamba.checkpoint.release import convert_release_state_dict
from mmmobilemamba.deploy import convert
from mmmobilemamba.models import MobileMamba
from ..helpers import SHARED, build_classifier, rel_err

FIXTURE = osp.join(SHARED, 'fixtures', 'release_t2_golden.pth')
TOL = 1e-4  # relative, fp32
FEATURES = ('patch_embed', 'blocks1', 'blocks2', 'blocks3')

pytestmark = pytest.mark.skipif(
    not osp.isfile(FIXTURE),
    reason=f'golden fixture {FIXTURE} not found: it is only provided beside '
    'the CI clone (../shared/fixtures)')


@pytest.fixture(scope='module')
def golden():
    data = torch.load(FIXTURE, map_location='cpu')
    converted, meta = convert_release_state_dict(data['state_dict'])
    assert meta['arch_name'] == 'T2'
    return data, converted


@pytest.fixture(scope='module')
def backbone(golden):
    model = MobileMamba('T2', out_indices=(0, 1, 2, 3)).eval()
    model.load_state_dict(
        {k[len('backbone.'):]: v for k, v in golden[1].items()
         if k.startswith('backbone.')}, strict=True)
    return model


@pytest.mark.parametrize('case', ['square', 'odd'])
def test_stage_features_match_the_release(golden, backbone, case):
    ref = golden[0][case]
    with torch.no_grad():
        outs = backbone(ref['input'])
    for name, out in zip(FEATURES, outs):
        assert out.shape == ref['features'][name].shape, name
        assert rel_err(out, ref['features'][name]) < TOL, name


@pytest.mark.parametrize('case', ['square', 'odd'])
def test_classifier_logits_match_the_release(golden, case):
    pytest.importorskip('mmpretrain')
    model = build_classifier('t2').eval()
    model.load_state_dict(golden[1], strict=True)
    ref = golden[0][case]
    with torch.no_grad():
        logits = model(ref['input'], mode='tensor')
        assert rel_err(logits, ref['logits']) < TOL
        # and after BN fusion
        fused = convert(model, 'eager-cpu')
        assert rel_err(fused(ref['input'], mode='tensor'),
                       ref['logits']) < TOL
