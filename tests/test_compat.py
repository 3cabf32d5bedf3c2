"""The stack's torch-2.13 breakages stay fixed (mmmobilemamba/compat.py)."""
import numpy as np
import pytest
import torch

import mmmobilemamba  # noqa: F401  (applies the fixes)
from mmmobilemamba.compat import load_local_checkpoint


def _runner_like_checkpoint(path):
    from mmengine.logging import HistoryBuffer, MessageHub
    hub = MessageHub('compat-test')
    hub.update_scalar('train/loss', 0.5)
    torch.save(
        dict(meta=dict(epoch=1, seed=np.int64(3)),
             state_dict=dict(w=torch.ones(2)),
             message_hub=hub.state_dict(),
             extra=HistoryBuffer([1.0, 2.0], [1, 1])), path)


def test_runner_checkpoint_needs_the_fix(tmp_path):
    path = str(tmp_path / 'runner.pth')
    _runner_like_checkpoint(path)
    with pytest.raises(Exception, match='Weights only load failed'):
        torch.load(path)  # what mmengine 0.10.7 does under torch >= 2.6


def test_mmengine_loads_runner_checkpoints(tmp_path):
    from mmengine.runner import CheckpointLoader
    path = str(tmp_path / 'runner.pth')
    _runner_like_checkpoint(path)
    ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert ckpt['meta']['seed'] == 3
    assert torch.equal(ckpt['state_dict']['w'], torch.ones(2))


def test_plain_state_dict_loads_safely(tmp_path, monkeypatch):
    path = str(tmp_path / 'plain.pth')
    torch.save({'w': torch.arange(3.)}, path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get('weights_only'))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy)
    assert torch.equal(load_local_checkpoint(path)['w'], torch.arange(3.))
    # torch's weights-only unpickler is called directly (with a per-load
    # allowlist): torch.load, which can unpickle in full, never runs
    assert calls == []


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_local_checkpoint(str(tmp_path / 'nope.pth'))


def test_ssd_head_inference_attribute():
    dense_heads = pytest.importorskip('mmdet.models.dense_heads')
    from mmengine.config import ConfigDict
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        _ssd_head_predicts(dense_heads.SSDHead, ConfigDict)


def _ssd_head_predicts(ssd_head_cls, ConfigDict):
    head = ssd_head_cls(
        num_classes=3,
        in_channels=(8, 8, 8),
        anchor_generator=dict(
            type='SSDAnchorGenerator',
            scale_major=False,
            input_size=64,
            min_sizes=[16, 32, 48],
            max_sizes=[32, 48, 64],
            strides=[16, 32, 64],
            ratios=[[2], [2], [2]]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder',
                        target_means=[0.0, 0.0, 0.0, 0.0],
                        target_stds=[0.1, 0.1, 0.2, 0.2]),
        test_cfg=ConfigDict(
            nms_pre=100, nms=dict(type='nms', iou_threshold=0.45),
            min_bbox_size=0, score_thr=0.02, max_per_img=10))
    head.eval()
    feats = (torch.randn(1, 8, 4, 4), torch.randn(1, 8, 2, 2),
             torch.randn(1, 8, 1, 1))
    cls_scores, bbox_preds = head(feats)
    results = head.predict_by_feat(
        cls_scores, bbox_preds,
        batch_img_metas=[dict(img_shape=(64, 64), scale_factor=(1., 1.))],
        rescale=False)
    assert results[0].bboxes.shape[1] == 4
