"""The dense part of a detector or segmentor as one traceable module.

What the release's tables count and time for downstream models, and what
``tools/analysis_tools/get_flops.py`` and ``benchmark.py`` therefore measure:

* mmdet: backbone + neck + dense head (``bbox_head`` of one-stage detectors,
  ``rpn_head`` of two-stage ones); RoI heads depend on the number of
  proposals and are left out. Default input 1280x800 (H=1280, W=800, as
  mmdet's tool), or the fixed test size of configs that resize to a square
  without keeping the ratio (SSD).
* mmseg: backbone + neck + decode head, what the segmentor computes at test
  time; the auxiliary head (training only) is left out. SyncBN is reverted
  to BN. Default input 512x512.
"""
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config


class DenseDetectorPart(nn.Module):
    """Backbone + neck + dense head of an mmdet detector, as one module.

    Args:
        detector (nn.Module): A built mmdet detector.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.backbone = detector.backbone
        self.neck = getattr(detector, 'neck', None)
        head = getattr(detector, 'bbox_head', None)
        if head is None:
            head = getattr(detector, 'rpn_head', None)
        if head is None:
            raise ValueError(f'{type(detector).__name__} has neither a '
                             'bbox_head nor an rpn_head to count')
        self.dense_head = head

    def forward(self, x: torch.Tensor):
        feats = self.backbone(x)
        if self.neck is not None:
            feats = self.neck(feats)
        return self.dense_head(feats)


def fixed_test_size(cfg: Config) -> Optional[Tuple[int, int]]:
    """(H, W) of a test pipeline that resizes to a fixed size, else None."""
    loader = cfg.get('test_dataloader') or {}
    dataset = loader.get('dataset') or {}
    for step in dataset.get('pipeline') or []:
        if step.get('type') == 'Resize' and step.get('keep_ratio') is False:
            scale = step.get('scale')
            if isinstance(scale, int):
                return scale, scale
            w, h = scale
            return h, w
    return None


def det_counted_model(cfg: Config, shape: Optional[Tuple[int, int]]):
    """mmdet: backbone + neck + dense head on a (1, 3, H, W) input."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    detector = MODELS.build(cfg.model)
    shape = shape or fixed_test_size(cfg) or (1280, 800)
    counted = DenseDetectorPart(detector)
    what = ('backbone + neck + dense head '
            f'({type(counted.dense_head).__name__})')
    if getattr(detector, 'roi_head', None) is not None:
        what += ('; the RoI head (depends on the number of proposals) is not '
                 'counted')
    return detector, counted, shape, what


class SegmentorPart(nn.Module):
    """Backbone + neck + decode head of an mmseg segmentor, as one module.

    Args:
        segmentor (nn.Module): A built mmseg ``EncoderDecoder``.
    """

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.backbone = segmentor.backbone
        self.neck = getattr(segmentor, 'neck', None)
        self.decode_head = segmentor.decode_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        if self.neck is not None:
            feats = self.neck(feats)
        return self.decode_head(feats)


def seg_counted_model(cfg: Config, shape: Optional[Tuple[int, int]]):
    """mmseg: backbone + neck + decode head on a (1, 3, H, W) input."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    # SyncBN needs a process group to run, not to be counted
    segmentor = revert_sync_batchnorm(MODELS.build(cfg.model))
    # the auxiliary head stays in the whole model's params, not the counted
    counted = SegmentorPart(segmentor)
    what = ('backbone + ' + ('neck + ' if counted.neck is not None else '') +
            f'decode head ({type(counted.decode_head).__name__}); auxiliary '
            'head not counted')
    return segmentor, counted, shape or (512, 512), what


#: default_scope -> fn(cfg, shape or None) ->
#:     (whole model, dense part, (H, W), description of the part)
DENSE_PARTS: Dict[str, Callable] = {
    'mmdet': det_counted_model,
    'mmseg': seg_counted_model,
}
