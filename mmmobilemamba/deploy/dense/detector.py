"""Whole single-stage mmdet detectors (RetinaNet, SSD/SSDLite) as
traceable modules.

* :class:`DetectorDense`: image -> ``boxes`` (1, A, 4) and ``scores``
  (1, A, C) for every anchor A of every level: backbone, neck, head,
  sigmoid (or softmax without the background column) and box decoding
  (``DeltaXYWHBBoxCoder``, clipped to the input), with the anchors of the
  fixed input size as constants. This is what a ``.pte`` holds; the host
  finishes with ``deploy/host.py``'s ``detections_from_dense``.
* :class:`DetectorNMS`: the same, then mmdet's post-processing in the
  graph: per level the (anchor, class) pairs above ``score_thr``, at most
  ``nms_pre`` of them (``TopK``); boxes not wider and taller than
  ``min_bbox_size`` dropped; per-class NMS (ONNX ``NonMaxSuppression``,
  one class row per label, so no coordinate offsets); the ``max_per_img``
  best. Outputs ``dets`` (N, 5) ``x1, y1, x2, y2, score`` in input pixels
  and ``labels`` (N,) int64, by descending score: mmdeploy's convention,
  for batch 1.

The thresholds come from the config's ``model.test_cfg``
(:func:`nms_settings`).
"""
import copy
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .nms import non_max_suppression


def _head_name(detector: nn.Module) -> str:
    names = [type(getattr(detector, n)).__name__
             for n in ('bbox_head', 'rpn_head', 'roi_head')
             if getattr(detector, n, None) is not None]
    return ', '.join(names) or type(detector).__name__


def check_dense_detector(detector: nn.Module) -> nn.Module:
    """The anchor-based dense head of ``detector``; a clear error naming
    the head when there is no export path for it."""
    head = getattr(detector, 'bbox_head', None)
    if head is None or getattr(detector, 'roi_head', None) is not None:
        raise NotImplementedError(
            f'{type(detector).__name__} ({_head_name(detector)}): no '
            'whole-model export path for a two-stage detector; export '
            '--features and run the heads on the host')
    coder = type(getattr(head, 'bbox_coder', None)).__name__
    if not hasattr(head, 'prior_generator') or coder != \
            'DeltaXYWHBBoxCoder':
        raise NotImplementedError(
            f'{type(head).__name__}: whole-model export covers anchor heads '
            f'with DeltaXYWHBBoxCoder (RetinaHead, SSDHead), not this head '
            f'(box coder {coder}); export --features and run it on the host')
    if getattr(head, 'with_score_factors', False) or getattr(
            getattr(head, 'loss_cls', None), 'custom_cls_channels', False):
        raise NotImplementedError(
            f'{type(head).__name__}: score factors / custom class channels '
            'have no export path')
    return head


def nms_settings(detector: nn.Module) -> dict:
    """score_thr, nms_pre, iou_thr, max_per_img, min_bbox_size of the dense
    head's ``test_cfg`` (mmdet's defaults where it says nothing)."""
    head = check_dense_detector(detector)
    cfg = head.test_cfg or {}
    nms_cfg = cfg.get('nms') or {}
    kind = nms_cfg.get('type', 'nms')
    if kind != 'nms':
        raise NotImplementedError(f'test_cfg.nms.type={kind!r}: only plain '
                                  "'nms' exports")
    return dict(score_thr=float(cfg.get('score_thr', 0.)),
                nms_pre=int(cfg.get('nms_pre', -1)),
                iou_thr=float(nms_cfg.get('iou_threshold', 0.5)),
                max_per_img=int(cfg.get('max_per_img', 100)),
                min_bbox_size=float(cfg.get('min_bbox_size', -1)))


def decode_deltas(anchors: torch.Tensor, deltas: torch.Tensor,
                  means: Sequence[float], stds: Sequence[float],
                  max_hw: Tuple[int, int], wh_ratio_clip: float = 16 / 1000,
                  clip_border: bool = True) -> torch.Tensor:
    """mmdet's ``delta2bbox`` (the same operations in the same order) for
    anchors (A, 4) and deltas (..., A, 4)."""
    means = deltas.new_tensor(means)
    stds = deltas.new_tensor(stds)
    denorm = deltas * stds + means
    dxy, dwh = denorm[..., :2], denorm[..., 2:]
    pxy = (anchors[:, :2] + anchors[:, 2:]) * 0.5
    pwh = anchors[:, 2:] - anchors[:, :2]
    max_ratio = float(np.abs(np.log(wh_ratio_clip)))
    dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
    gxy = pxy + pwh * dxy
    gwh = pwh * dwh.exp()
    x1y1 = gxy - gwh * 0.5
    x2y2 = gxy + gwh * 0.5
    if clip_border:
        limit = deltas.new_tensor([max_hw[1], max_hw[0]])
        x1y1 = torch.minimum(x1y1.clamp(min=0.), limit)
        x2y2 = torch.minimum(x2y2.clamp(min=0.), limit)
    return torch.cat([x1y1, x2y2], dim=-1)


class DetectorDense(nn.Module):
    """Image (1, 3, H, W) -> (boxes (1, A, 4), scores (1, A, C)).

    Args:
        detector (nn.Module): mmdet single-stage detector, eval mode (it is
            copied, not changed).
        size (Sequence[int]): (H, W) of the export; the anchors are built
            for it.
    """

    def __init__(self, detector: nn.Module, size: Sequence[int]) -> None:
        super().__init__()
        check_dense_detector(detector)
        self.detector = copy.deepcopy(detector).eval()
        head = self.detector.bbox_head
        if hasattr(head, 'loss_cls') is False:
            head.loss_cls = None
        self.size = (int(size[0]), int(size[1]))
        self.num_classes = int(head.num_classes)
        self.use_sigmoid = bool(head.use_sigmoid_cls)
        self.cls_channels = int(head.cls_out_channels)
        coder = head.bbox_coder
        self.means = tuple(float(m) for m in coder.means)
        self.stds = tuple(float(s) for s in coder.stds)
        self.clip_border = bool(getattr(coder, 'clip_border', True))
        if getattr(coder, 'add_ctr_clamp', False):
            raise NotImplementedError('DeltaXYWHBBoxCoder(add_ctr_clamp=True)'
                                      ' has no export path')
        with torch.no_grad():
            feats = self.detector.extract_feat(torch.zeros(1, 3, *self.size))
            cls_scores, _ = head(feats)
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        anchors = head.prior_generator.grid_priors(sizes, device='cpu')
        anchors = [getattr(a, 'tensor', a) for a in anchors]
        #: anchors per level, in the order of the outputs
        self.levels: List[int] = [int(a.shape[0]) for a in anchors]
        self.register_buffer('anchors', torch.cat(anchors).float(),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feats = self.detector.extract_feat(x)
        cls_scores, bbox_preds = self.detector.bbox_head(feats)
        batch = x.shape[0]
        scores = torch.cat([c.permute(0, 2, 3, 1).reshape(
            batch, -1, self.cls_channels) for c in cls_scores], dim=1)
        deltas = torch.cat([b.permute(0, 2, 3, 1).reshape(batch, -1, 4)
                            for b in bbox_preds], dim=1)
        if self.use_sigmoid:
            scores = scores.sigmoid()
        else:
            scores = scores.softmax(-1)[..., :self.num_classes]
        boxes = decode_deltas(self.anchors, deltas, self.means, self.stds,
                              self.size, clip_border=self.clip_border)
        return boxes, scores


class DetectorNMS(nn.Module):
    """Image (1, 3, H, W) -> (dets (N, 5), labels (N,)), NMS in the graph.

    Args:
        dense (DetectorDense): The dense part.
        score_thr, nms_pre, iou_thr, max_per_img, min_bbox_size: As in
            mmdet's ``test_cfg`` (:func:`nms_settings`).
    """

    def __init__(self, dense: DetectorDense, score_thr: float, nms_pre: int,
                 iou_thr: float, max_per_img: int,
                 min_bbox_size: float = -1) -> None:
        super().__init__()
        self.dense = dense
        self.score_thr = float(score_thr)
        self.nms_pre = int(nms_pre)
        self.iou_thr = float(iou_thr)
        self.max_per_img = int(max_per_img)
        self.min_bbox_size = float(min_bbox_size)

    @classmethod
    def from_detector(cls, detector: nn.Module, size: Sequence[int]
                      ) -> 'DetectorNMS':
        return cls(DetectorDense(detector, size), **nms_settings(detector))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if x.shape[0] != 1:
            raise ValueError('the NMS graph is exported for batch 1')
        boxes, scores = self.dense(x)
        boxes, scores = boxes[0], scores[0]
        num_classes = scores.shape[-1]
        below = scores.new_full((), -1.)
        cand_boxes, cand_scores, cand_labels = [], [], []
        start = 0
        for count in self.dense.levels:
            flat = scores[start:start + count].reshape(-1)
            flat = torch.where(flat > self.score_thr, flat, below)
            k = count * num_classes
            if self.nms_pre > 0:
                k = min(k, self.nms_pre)
            top, idx = flat.topk(k)
            anchor = torch.div(idx, num_classes, rounding_mode='floor')
            cand_boxes.append(boxes[start:start + count][anchor])
            cand_scores.append(top)
            cand_labels.append(idx - anchor * num_classes)
            start += count
        boxes = torch.cat(cand_boxes)
        scores = torch.cat(cand_scores)
        labels = torch.cat(cand_labels)
        if self.min_bbox_size >= 0:
            wide = (boxes[:, 2] - boxes[:, 0]) > self.min_bbox_size
            tall = (boxes[:, 3] - boxes[:, 1]) > self.min_bbox_size
            scores = torch.where(wide & tall, scores, below)
        classes = torch.arange(num_classes, device=x.device)
        per_class = torch.where(labels[None, :] == classes[:, None],
                                scores[None, :], below)
        selected = non_max_suppression(boxes[None], per_class[None],
                                       self.max_per_img, self.iou_thr,
                                       self.score_thr)
        keep = selected[:, 2]
        kept_scores = scores[keep]
        order = kept_scores.argsort(descending=True)[:self.max_per_img]
        keep = keep[order]
        dets = torch.cat([boxes[keep], kept_scores[order, None]], dim=1)
        return dets, labels[keep]
