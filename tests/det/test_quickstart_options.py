"""tools/quickstart_detection.py: its ``--cfg-options`` make a consistent
config of the slim from-scratch RetinaNet that trains at 256 px.

(The quick start itself runs end to end as README's first command in CI.)
"""
import os.path as osp

import pytest
import torch

from ..helpers import REPO, load_tool

pytest.importorskip('mmdet')


def _merged_cfg(tmp_path, epochs=5, arch='T2'):
    from mmengine.config import Config
    qs = load_tool('quickstart_detection.py')
    opts = qs.quickstart_options(str(tmp_path), epochs, arch)
    cfg = Config.fromfile(osp.join(REPO, qs.CONFIG))
    cfg.merge_from_dict(opts)
    return qs, cfg


def _resize_scales(pipeline):
    return [tuple(t['scale']) for t in pipeline if t['type'] == 'Resize']


def test_options_point_at_the_data_and_keep_the_schedule_consistent(
        tmp_path):
    qs, cfg = _merged_cfg(tmp_path, epochs=7)
    root = str(tmp_path)
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        assert loader.dataset.data_root == root
        assert loader.num_workers == 0 and not loader.persistent_workers
        assert _resize_scales(loader.dataset.pipeline) == [qs.IMAGE_SCALE]
    assert cfg.test_evaluator.ann_file == osp.join(
        root, 'annotations', 'instances_val2017.json')
    # cosine decay over the second half, ending at the last epoch
    assert cfg.train_cfg.max_epochs == 7
    assert cfg.train_cfg.val_interval == 7
    assert cfg.default_hooks.checkpoint.interval == 7
    cosine = cfg.param_scheduler[1]
    assert (cosine.begin, cosine.end, cosine.T_max) == (3, 7, 4)
    assert cfg.randomness.seed == 0


def test_slim_model_builds_from_scratch_and_learns_a_step(tmp_path):
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.registry import init_default_scope
    qs, cfg = _merged_cfg(tmp_path)
    assert cfg.model.backbone.init_cfg is None  # never a download
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    # the neck takes T2's widths; GroupNorm in the head's stacked conv
    assert [c.in_channels for c in model.neck.lateral_convs] == \
        list(cfg.model.neck.in_channels)
    assert isinstance(model.bbox_head.cls_convs[0].norm, torch.nn.GroupNorm)
    w, h = qs.IMAGE_SCALE
    packed = demo_mm_inputs(2, image_shapes=[(3, h, w)] * 2,
                            num_items=[1, 3], num_classes=6)
    model.train()
    losses = model(**model.data_preprocessor(packed, True), mode='loss')
    total = sum(sum(v) if isinstance(v, list) else v
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in model.backbone.parameters()
               if p.requires_grad)


def test_t2_option_names_the_t2_widths(tmp_path):
    from mmmobilemamba.models.backbones.mobilemamba import resolve_arch
    _, cfg = _merged_cfg(tmp_path, arch='T2')
    assert list(cfg.model.neck.in_channels) == list(
        resolve_arch('T2')['embed_dims'])
    assert cfg.model.backbone.arch == 'T2'
    _, cfg = _merged_cfg(tmp_path, arch='B1')
    assert list(cfg.model.neck.in_channels) == list(
        resolve_arch('B1')['embed_dims'])
