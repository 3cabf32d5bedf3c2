"""BN fusion (deploy mode): equivalence on backbone, classifier, detector and
segmentor; fused checkpoints load into models built with deploy=True."""
import os.path as osp

import pytest
import torch

from mmmobilemamba.models import MobileMamba, fuse_bn
from ..helpers import REPO, build_classifier, randomize_norms, rel_err

TOL = 1e-4  # relative, fp32 (the bar)


def _fused_copy(model):
    import copy
    return fuse_bn(copy.deepcopy(model))


@pytest.mark.parametrize('batch', [1, 8])
def test_backbone_fusion_equivalence(batch):
    torch.manual_seed(batch)
    model = randomize_norms(MobileMamba('T2', out_indices=(0, 1, 2, 3)))
    model.eval()
    fused = _fused_copy(model)
    assert fused.deploy
    assert not any(isinstance(m, torch.nn.BatchNorm2d)
                   for m in fused.modules())
    assert any(isinstance(m, torch.nn.LayerNorm) for m in fused.modules())
    x = torch.rand(batch, 3, 96, 80)
    with torch.no_grad():
        for a, b in zip(fused(x), model(x)):
            assert rel_err(a, b) < TOL


def test_fused_state_dict_loads_strictly_into_a_deploy_backbone():
    model = randomize_norms(MobileMamba('T2', out_indices=(1, 2, 3))).eval()
    fused = _fused_copy(model)
    built = MobileMamba('T2', out_indices=(1, 2, 3), deploy=True).eval()
    built.load_state_dict(fused.state_dict(), strict=True)
    assert not any(k.endswith('.bn.weight') for k in built.state_dict())
    # the local branch is conv -> ReLU -> conv
    local = built.stages[0].blocks[0].mrffi.local_op
    assert local.spatial[0].conv.bias is not None
    assert local.channel.conv.bias is not None
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(built(x), model(x)):
            assert rel_err(a, b) < TOL
    # and an unfused checkpoint into the fused model is reported, with advice
    with pytest.warns(UserWarning, match='build it with deploy=False'):
        built.load_state_dict_report(model.state_dict())


def test_multi_kernel_backbone_fuses():
    model = randomize_norms(
        MobileMamba('T2', local_kernel_sizes=((3, 5, 7), (3, 5), 3))).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(_fused_copy(model)(x)[0], model(x)[0]) < TOL


def test_fuse_bn_refuses_models_with_nothing_to_fuse():
    with pytest.raises(ValueError, match='Sequential has no module offering'):
        fuse_bn(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)))


@pytest.mark.parametrize('batch', [1, 8])
def test_classifier_fusion_equivalence_and_deploy_config(batch):
    pytest.importorskip('mmpretrain')
    model = randomize_norms(build_classifier('t2')).eval()
    fused = _fused_copy(model)
    x = torch.rand(batch, 3, 64, 64)
    with torch.no_grad():
        ref = model(x, mode='tensor')
        assert rel_err(fused(x, mode='tensor'), ref) < TOL
    built = build_classifier('t2', **{'backbone.deploy': True,
                                      'head.deploy': True}).eval()
    built.load_state_dict(fused.state_dict(), strict=True)
    with torch.no_grad():
        assert rel_err(built(x, mode='tensor'), ref) < TOL


@pytest.mark.parametrize('scope,config', [
    ('mmdet', 'configs/retinanet_mobilemamba_b1.py'),
    ('mmseg', 'configs/fpn_mobilemamba_b4-160k_ade20k-512x512.py'),
])
def test_detector_and_segmentor_fusion(scope, config):
    pytest.importorskip(scope)
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    path = osp.join(REPO, config)
    if not osp.isfile(path):
        pytest.skip(f'{config} is not in this checkout')
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None
    # a context, so that no global default scope leaks into other tests
    with DefaultScope.overwrite_default_scope(scope):
        model = randomize_norms(MODELS.build(cfg.model)).eval()
    fused = _fused_copy(model)
    assert fused.backbone.deploy
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        for a, b in zip(fused.extract_feat(x), model.extract_feat(x)):
            assert rel_err(a, b) < TOL
