"""The detection configs: the release's settings, no downloads, every model
builds, computes losses and predicts on a small input."""
import os.path as osp

import pytest
import torch

from ..helpers import REPO

pytest.importorskip('mmdet')

CONFIGS = {
    'retinanet': 'configs/retinanet/retinanet_mobilemamba-b1_fpn_1x_coco.py',
    'mask-rcnn': 'configs/mask-rcnn/mask-rcnn_mobilemamba-b1_fpn_1x_coco.py',
    'ssdlite-320': 'configs/ssdlite/ssdlite_mobilemamba-b1_600e_coco-320.py',
    'ssdlite-512': 'configs/ssdlite/ssdlite_mobilemamba-b1_600e_coco-512.py',
}


def _cfg(name):
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config
    return Config.fromfile(osp.join(REPO, CONFIGS[name]))


def _build(cfg):
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_config_reads_coco_and_needs_no_download(name):
    cfg = _cfg(name)
    assert cfg.default_scope == 'mmdet'
    assert 'mmmobilemamba' in cfg.custom_imports.imports
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch) == ('MobileMamba', 'B1')
    assert backbone.init_cfg.type == 'Pretrained'
    assert not backbone.init_cfg.checkpoint.startswith(
        ('http', 'torchvision://', 'open-mmlab://'))
    text = cfg.pretty_text
    assert 'torchvision://' not in text and 'https://' not in text
    ann = cfg.test_evaluator.ann_file
    assert ann == 'data/coco/annotations/instances_val2017.json'
    assert cfg.test_evaluator.type == 'CocoMetric'
    assert cfg.default_hooks.visualization.type == 'DetVisualizationHook'


def test_short_retinanet_name_is_the_full_config():
    """configs/retinanet_mobilemamba_b1.py, the name users type, stays an
    alias of the RetinaNet config."""
    from mmengine.config import Config
    alias = Config.fromfile(
        osp.join(REPO, 'configs', 'retinanet_mobilemamba_b1.py'))
    assert alias.to_dict() == _cfg('retinanet').to_dict()


def test_fpn_detectors_follow_the_release():
    for name, deconvs, extra in (('retinanet', 1, 'on_input'),
                                 ('mask-rcnn', 2, False)):
        cfg = _cfg(name)
        neck = cfg.model.neck
        assert neck.type == 'DeconvFPN'
        assert list(neck.in_channels) == [200, 376, 448]
        assert (neck.out_channels, neck.num_outs) == (256, 5)
        assert neck.num_deconvs == deconvs
        assert neck.get('add_extra_convs', False) == extra
        assert cfg.model.backbone.out_indices == (1, 2, 3)
        assert cfg.model.backbone.norm_eval is True
        optim = cfg.optim_wrapper
        assert optim.optimizer.type == 'AdamW'
        assert (optim.optimizer.lr, optim.optimizer.weight_decay) == (2e-4,
                                                                      0.05)
        assert optim.paramwise_cfg.norm_decay_mult == 0
        assert optim.clip_grad.max_norm == 0.1
        assert cfg.train_cfg.max_epochs == 12
        warmup, cosine = cfg.param_scheduler
        assert (warmup.type, warmup.end, warmup.by_epoch) == ('LinearLR', 500,
                                                              False)
        assert (cosine.type, cosine.begin, cosine.end) == (
            'CosineAnnealingLR', 6, 12)
        assert cfg.auto_scale_lr.base_batch_size == 16


def test_ssdlite_follows_the_release():
    c320, c512 = _cfg('ssdlite-320'), _cfg('ssdlite-512')
    for cfg in (c320, c512):
        assert cfg.model.backbone.out_indices == (1, 2)
        assert tuple(cfg.model.neck.in_channels) == (200, 376)
        assert tuple(cfg.model.neck.out_channels) == (200, 376, 512, 256, 256,
                                                      128)
        assert cfg.model.neck.use_depthwise
        assert cfg.model.neck.norm_cfg == dict(type='BN', eps=0.001,
                                               momentum=0.03)
        assert cfg.model.neck.act_cfg.type == 'ReLU6'
        assert cfg.optim_wrapper.optimizer.type == 'AdamW'
        assert cfg.optim_wrapper.optimizer.lr == 2.4e-3
        assert cfg.auto_scale_lr.base_batch_size == 192
        # 120 epochs over the train set repeated 5 times
        assert cfg.train_cfg.max_epochs * \
            cfg.train_dataloader.dataset.times == 600
    assert c320.model.bbox_head.anchor_generator.strides == [
        16, 32, 64, 107, 160, 320]
    # the 512 model's anchors fit a 512 input: the coarsest stride covers it
    anchors = c512.model.bbox_head.anchor_generator
    assert anchors.strides == [16, 32, 64, 128, 256, 512]
    assert anchors.max_sizes[-1] == 512
    for pipeline in (c512.train_dataloader.dataset.dataset.pipeline,
                     c512.test_dataloader.dataset.pipeline):
        resize = [s for s in pipeline if s.type == 'Resize'][0]
        assert tuple(resize.scale) == (512, 512)


def _strides(feats, height):
    return [height // f.shape[2] for f in feats]


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_model_builds_trains_and_predicts(name):
    from mmdet.testing import demo_mm_inputs
    cfg = _cfg(name)
    model = _build(cfg)
    with_mask = name == 'mask-rcnn'
    h, w = 96, 128
    packed = demo_mm_inputs(2, image_shapes=[(3, h, w)] * 2, num_items=[2, 3],
                            num_classes=80, with_mask=with_mask)
    data = model.data_preprocessor(packed, True)
    height = data['inputs'].shape[2]  # padded to the config's divisor
    feats = model.extract_feat(data['inputs'])
    expected = {
        'retinanet': [8, 16, 32, 64, 128],
        'mask-rcnn': [4, 8, 16, 32, 64],
    }.get(name)
    if expected:
        assert _strides(feats, height) == expected
        assert all(f.shape[1] == 256 for f in feats)
    else:
        assert [f.shape[1] for f in feats] == [200, 376, 512, 256, 256, 128]
    model.train()
    losses = model(**data, mode='loss')
    total = sum(v if isinstance(v, torch.Tensor) else sum(v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False),
                        mode='predict')
    assert len(results) == 2
    for res in results:
        boxes = res.pred_instances.bboxes
        assert boxes.ndim == 2 and boxes.shape[1] == 4
        if with_mask:
            assert 'masks' in res.pred_instances


def test_param_counts_match_the_release():
    """Whole-model parameters vs the release's (27.1 M, 38.0 M, 18.0 M)."""
    for name, release in (('retinanet', 27.1), ('mask-rcnn', 38.0),
                          ('ssdlite-320', 18.0)):
        model = _build(_cfg(name))
        params = sum(p.numel() for p in model.parameters()) / 1e6
        assert abs(params - release) < 0.15, (name, params)


def test_backbone_weights_come_through_init_cfg(tmp_path):
    """A classifier checkpoint ('backbone.*' keys) initialises the detector's
    backbone via init_cfg; nothing is downloaded."""
    from mmmobilemamba.models.backbones.mobilemamba import MobileMamba
    torch.manual_seed(1)
    source = MobileMamba(arch='B1', out_indices=(1, 2, 3))
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(1000, 448)
    ckpt = str(tmp_path / 'b1_cls.pth')
    torch.save({'state_dict': state}, ckpt)

    cfg = _cfg('retinanet')
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg.model.backbone.init_cfg.checkpoint = ckpt
    model = MODELS.build(cfg.model)
    model.init_weights()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value)


def test_missing_pretrained_checkpoint_names_the_path(tmp_path):
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = _cfg('retinanet')
    missing = str(tmp_path / 'no_weights.pth')
    cfg.model.backbone.init_cfg.checkpoint = missing
    model = MODELS.build(cfg.model)
    with pytest.raises(FileNotFoundError, match='no_weights.pth'):
        model.init_weights()
