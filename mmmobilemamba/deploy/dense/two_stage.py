"""Mask R-CNN (mmdet ``MaskRCNN``: RPN, ``StandardRoIHead`` with a shared-FC
box head and an FCN mask head) as one traceable module, every step of
mmdet's ``predict`` in the graph:

1. RPN: per level the ``nms_pre`` best anchors (``TopK``), decoded and
   clipped, boxes not wider/taller than ``min_bbox_size`` dropped, NMS per
   level (``NonMaxSuppression`` with one batch row per level, so no
   coordinate offsets), the ``max_per_img`` best proposals;
2. box head: each proposal's level by its scale (mmdet's rule), ``RoiAlign``
   (ONNX opset 16, ``half_pixel``: mmcv's ``aligned=True``) on every level
   and the proposal's level selected, shared FCs, softmax, class-specific
   decoding, per-class NMS (one batch row per class), the ``max_per_img``
   best;
3. mask head: ``RoiAlign`` of the detections, the FCN mask head, the
   detection's class channel, sigmoid, pasted at the input size with
   ``GridSample`` (mmdet's ``_do_paste_mask``) and thresholded at
   ``mask_thr_binary``.

Outputs ``dets`` (N, 5), ``labels`` (N,) int64 and ``masks`` (N, H, W)
bool at the input size; batch 1; ONNX only (ExecuTorch has no RoIAlign or
NMS kernel: the error says so).
"""
import copy
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .detector import decode_deltas
from .nms import non_max_suppression


class _RoiAlign(torch.autograd.Function):
    """mmcv's ``roi_align(aligned=True, pool_mode='avg')`` in PyTorch;
    ONNX ``RoiAlign`` (opset 16, ``half_pixel``) when traced."""

    @staticmethod
    def forward(ctx, feat, boxes, out_h: int, out_w: int, scale: float,
                sampling_ratio: int):
        from mmcv.ops import roi_align
        rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], 1)
        return roi_align(feat, rois, (out_h, out_w), scale, sampling_ratio,
                         'avg', True)

    @staticmethod
    def symbolic(g, feat, boxes, out_h, out_w, scale, sampling_ratio):
        zero = g.op('Constant', value_t=torch.tensor([0], dtype=torch.long))
        shape = g.op('Shape', boxes)
        count = g.op('Gather', shape, zero, axis_i=0)
        batch = g.op('Expand', zero, count)
        return g.op('RoiAlign', feat, boxes, batch,
                    coordinate_transformation_mode_s='half_pixel',
                    mode_s='avg', output_height_i=out_h,
                    output_width_i=out_w, sampling_ratio_i=sampling_ratio,
                    spatial_scale_f=scale)


def roi_align(feat, boxes, out_size, scale, sampling_ratio=0):
    """RoIAlign of boxes (K, 4) on a batch-1 map (1, C, H, W)."""
    oh, ow = (out_size, out_size) if isinstance(out_size, int) else out_size
    return _RoiAlign.apply(feat, boxes, int(oh), int(ow), float(scale),
                           int(sampling_ratio))


class _Extractor:
    """A ``SingleRoIExtractor``: level of each box, RoIAlign on its level."""

    def __init__(self, extractor) -> None:
        self.strides = list(extractor.featmap_strides)
        self.finest_scale = float(extractor.finest_scale)
        layer = extractor.roi_layers[0]
        self.out_size = tuple(layer.output_size)
        self.sampling_ratio = int(layer.sampling_ratio)
        if not getattr(layer, 'aligned', True) or \
                getattr(layer, 'pool_mode', 'avg') != 'avg':
            raise NotImplementedError('RoIAlign(aligned=False or max pool) '
                                      'has no export path')

    def __call__(self, feats, boxes):
        scale = torch.sqrt((boxes[:, 2] - boxes[:, 0]) *
                           (boxes[:, 3] - boxes[:, 1]))
        levels = torch.floor(torch.log2(scale / self.finest_scale + 1e-6))
        levels = levels.clamp(min=0, max=len(self.strides) - 1)
        out = None
        for i, stride in enumerate(self.strides):
            part = roi_align(feats[i], boxes, self.out_size, 1. / stride,
                             self.sampling_ratio)
            part = part * (levels == i).to(part.dtype)[:, None, None, None]
            out = part if out is None else out + part
        return out


class MaskRCNNExport(nn.Module):
    """Image (1, 3, H, W) -> (dets (N, 5), labels (N,), masks (N, H, W)).

    Args:
        detector (nn.Module): mmdet ``MaskRCNN`` (or ``FasterRCNN``: no
            masks output), eval mode; copied, not changed.
        size (Sequence[int]): (H, W) of the export (the RPN's anchors).
    """

    def __init__(self, detector: nn.Module, size: Sequence[int]) -> None:
        super().__init__()
        self.detector = copy.deepcopy(detector).eval()
        rpn, roi = self.detector.rpn_head, self.detector.roi_head
        check_two_stage(self.detector)
        self.size = (int(size[0]), int(size[1]))
        cfg = self.detector.test_cfg
        self.rpn_cfg = dict(nms_pre=int(cfg.rpn.get('nms_pre', -1)),
                            iou_thr=float(cfg.rpn.nms.iou_threshold),
                            max_per_img=int(cfg.rpn.max_per_img),
                            min_bbox_size=float(cfg.rpn.get('min_bbox_size',
                                                            -1)))
        self.rcnn_cfg = dict(score_thr=float(cfg.rcnn.score_thr),
                             iou_thr=float(cfg.rcnn.nms.iou_threshold),
                             max_per_img=int(cfg.rcnn.max_per_img),
                             mask_thr=float(cfg.rcnn.get('mask_thr_binary',
                                                         0.5)))
        self.with_mask = bool(roi.with_mask)
        with torch.no_grad():
            feats = self.detector.extract_feat(torch.zeros(1, 3, *self.size))
            cls_scores, _ = rpn(feats)
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        anchors = rpn.prior_generator.grid_priors(sizes, device='cpu')
        anchors = [getattr(a, 'tensor', a).float() for a in anchors]
        self.levels = [int(a.shape[0]) for a in anchors]
        self.register_buffer('anchors', torch.cat(anchors), persistent=False)
        self.bbox_extractor = _Extractor(roi.bbox_roi_extractor)
        if self.with_mask:
            self.mask_extractor = _Extractor(roi.mask_roi_extractor)

    def _coder(self, coder):
        return dict(means=tuple(coder.means), stds=tuple(coder.stds),
                    max_hw=self.size,
                    clip_border=bool(getattr(coder, 'clip_border', True)))

    def proposals(self, feats):
        """The RPN's proposals (P, 4), by descending score."""
        rpn = self.detector.rpn_head
        cls_scores, bbox_preds = rpn(feats)
        cfg = self.rpn_cfg
        boxes_l, scores_l = [], []
        start = 0
        for cls, reg, count in zip(cls_scores, bbox_preds, self.levels):
            scores = cls.permute(0, 2, 3, 1).reshape(-1)
            scores = scores.sigmoid() if rpn.use_sigmoid_cls else \
                cls.permute(0, 2, 3, 1).reshape(-1, 2).softmax(-1)[:, 0]
            deltas = reg.permute(0, 2, 3, 1).reshape(-1, 4)
            k = count if cfg['nms_pre'] <= 0 else min(count, cfg['nms_pre'])
            top, idx = scores.topk(k)
            boxes = decode_deltas(self.anchors[start:start + count][idx],
                                  deltas[idx], **self._coder(rpn.bbox_coder))
            boxes_l.append(boxes)
            scores_l.append(top)
            start += count
        width = max(len(s) for s in scores_l)
        below = -1.
        boxes = torch.stack([F.pad(b, (0, 0, 0, width - len(b)))
                             for b in boxes_l])          # (L, K, 4)
        scores = torch.stack([F.pad(s, (0, width - len(s)), value=below)
                              for s in scores_l])        # (L, K)
        if cfg['min_bbox_size'] >= 0:
            wide = (boxes[..., 2] - boxes[..., 0]) > cfg['min_bbox_size']
            tall = (boxes[..., 3] - boxes[..., 1]) > cfg['min_bbox_size']
            scores = torch.where(wide & tall, scores,
                                 scores.new_full((), below))
        sel = non_max_suppression(boxes, scores[:, None], cfg['max_per_img'],
                                  cfg['iou_thr'], -0.5)
        kept = scores[sel[:, 0], sel[:, 2]]
        order = kept.argsort(descending=True)[:cfg['max_per_img']]
        return boxes[sel[:, 0], sel[:, 2]][order]

    def forward(self, x: torch.Tensor):
        if x.shape[0] != 1:
            raise ValueError('Mask R-CNN is exported for batch 1')
        feats = self.detector.extract_feat(x)
        proposals = self.proposals(feats)
        roi = self.detector.roi_head
        head = roi.bbox_head
        n = len(self.bbox_extractor.strides)
        cls_score, bbox_pred = head(self.bbox_extractor(feats[:n], proposals))
        num_classes = head.num_classes
        scores = cls_score.softmax(-1)[:, :num_classes]            # (R, C)
        if head.reg_class_agnostic:
            deltas = bbox_pred.reshape(1, -1, 4)
        else:
            deltas = bbox_pred.reshape(-1, num_classes, 4).transpose(0, 1)
        boxes = decode_deltas(proposals, deltas,
                              **self._coder(head.bbox_coder))      # (C, R, 4)
        boxes = boxes.expand(num_classes, -1, -1)
        cfg = self.rcnn_cfg
        sel = non_max_suppression(boxes, scores.t()[:, None],
                                  cfg['max_per_img'], cfg['iou_thr'],
                                  cfg['score_thr'])
        labels, idx = sel[:, 0], sel[:, 2]
        kept = scores[idx, labels]
        order = kept.argsort(descending=True)[:cfg['max_per_img']]
        labels, idx, kept = labels[order], idx[order], kept[order]
        det_boxes = boxes[labels, idx]
        dets = torch.cat([det_boxes, kept[:, None]], 1)
        if not self.with_mask:
            return dets, labels
        nm = len(self.mask_extractor.strides)
        mask_pred = roi.mask_head(self.mask_extractor(feats[:nm], det_boxes))
        if roi.mask_head.class_agnostic:
            probs = mask_pred[:, 0]
        else:
            # each detection's class channel; a gather, not
            # mask_pred[arange(len(labels)), labels], whose arange the
            # tracer records as a constant of the example's detection count
            index = labels[:, None, None, None].expand(
                -1, 1, mask_pred.shape[2], mask_pred.shape[3])
            probs = mask_pred.gather(1, index)[:, 0]
        masks = paste_masks(probs.sigmoid()[:, None], det_boxes, self.size)
        return dets, labels, masks >= cfg['mask_thr']


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, size) -> torch.Tensor:
    """mmdet's ``_do_paste_mask`` over the whole input: (N, 1, h, w) mask
    probabilities in their boxes -> (N, H, W)."""
    h, w = int(size[0]), int(size[1])
    x0, y0, x1, y1 = boxes[:, 0:1], boxes[:, 1:2], boxes[:, 2:3], boxes[:, 3:4]
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    ys = (ys[None] - y0) / (y1 - y0) * 2 - 1                       # (N, H)
    xs = (xs[None] - x0) / (x1 - x0) * 2 - 1                       # (N, W)
    gx = xs[:, None, :].expand(-1, h, -1)
    gy = ys[:, :, None].expand(-1, -1, w)
    grid = torch.stack([gx, gy], dim=3)
    out = F.grid_sample(masks, grid, align_corners=False)
    return out[:, 0]


def check_two_stage(detector: nn.Module) -> None:
    """Raise NotImplementedError naming the part of a two-stage detector
    that has no export path."""
    roi = getattr(detector, 'roi_head', None)
    rpn = getattr(detector, 'rpn_head', None)
    name = type(detector).__name__
    if rpn is None or roi is None:
        raise NotImplementedError(f'{name}: no RPN / RoI head')
    if type(roi).__name__ != 'StandardRoIHead':
        raise NotImplementedError(
            f'{name} ({type(roi).__name__}): whole-model export covers '
            'StandardRoIHead (Faster/Mask R-CNN), not this RoI head')
    if type(rpn.bbox_coder).__name__ != 'DeltaXYWHBBoxCoder' or \
            type(roi.bbox_head.bbox_coder).__name__ != 'DeltaXYWHBBoxCoder':
        raise NotImplementedError(f'{name}: box coders other than '
                                  'DeltaXYWHBBoxCoder have no export path')
    if getattr(roi, 'with_shared_head', False):
        raise NotImplementedError(f'{name}: a shared RoI head has no '
                                  'export path')
    for ext in ('bbox_roi_extractor', 'mask_roi_extractor'):
        e = getattr(roi, ext, None)
        if e is not None and type(e).__name__ != 'SingleRoIExtractor':
            raise NotImplementedError(f'{name}: {type(e).__name__} has no '
                                      'export path')
