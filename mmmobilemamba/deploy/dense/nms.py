"""ONNX ``NonMaxSuppression`` as a PyTorch function.

:func:`non_max_suppression` computes, in PyTorch, what the ONNX operator
computes (greedy NMS per batch and class, boxes as corners, a box dropped
when its IoU with a kept box is > ``iou_thr`` or its score is not above
``score_thr``; at most ``max_per_class`` per class) and returns its output
layout, (K, 3) int64 rows of (batch, class, box). Traced by
``torch.onnx.export`` it becomes that one operator
(:class:`_NonMaxSuppression`'s ``symbolic``).
"""
import torch


def _greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thr: float,
                max_num: int) -> torch.Tensor:
    """Indices kept by greedy NMS of one class, by descending score."""
    order = scores.argsort(descending=True, stable=True)
    x1, y1, x2, y2 = boxes.unbind(-1)
    areas = (x2 - x1) * (y2 - y1)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for pos in range(len(order)):
        if suppressed[pos]:
            continue
        i = order[pos]
        keep.append(int(i))
        if 0 < max_num <= len(keep):
            break
        rest = order[pos + 1:]
        w = (torch.minimum(x2[i], x2[rest]) -
             torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) -
             torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[pos + 1:] |= torch.nan_to_num(iou, nan=0.) > iou_thr
    return torch.tensor(keep, dtype=torch.long)


class _NonMaxSuppression(torch.autograd.Function):

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class: int, iou_thr: float,
                score_thr: float):
        rows = []
        for b in range(boxes.shape[0]):
            for c in range(scores.shape[1]):
                s = scores[b, c]
                valid = torch.nonzero(s > score_thr).flatten()
                if len(valid) == 0:
                    continue
                kept = valid[_greedy_nms(boxes[b, valid], s[valid], iou_thr,
                                         max_per_class)]
                rows.append(torch.stack([torch.full_like(kept, b),
                                         torch.full_like(kept, c), kept], 1))
        if not rows:
            return boxes.new_zeros((0, 3), dtype=torch.long)
        return torch.cat(rows)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou_thr, score_thr):
        max_out = g.op('Constant',
                       value_t=torch.tensor([max_per_class],
                                            dtype=torch.long))
        iou = g.op('Constant', value_t=torch.tensor([iou_thr],
                                                    dtype=torch.float))
        thr = g.op('Constant', value_t=torch.tensor([score_thr],
                                                    dtype=torch.float))
        return g.op('NonMaxSuppression', boxes, scores, max_out, iou, thr,
                    center_point_box_i=0)


def non_max_suppression(boxes: torch.Tensor, scores: torch.Tensor,
                        max_per_class: int, iou_thr: float,
                        score_thr: float) -> torch.Tensor:
    """ONNX ``NonMaxSuppression``.

    Args:
        boxes (Tensor): (B, N, 4) x1, y1, x2, y2.
        scores (Tensor): (B, C, N).
        max_per_class (int): At most this many boxes per batch and class.
        iou_thr (float): A box whose IoU with a kept box is > this goes.
        score_thr (float): Only boxes scoring above this are considered.

    Returns:
        Tensor: (K, 3) int64 (batch, class, box index); within a batch and
        class by descending score.
    """
    return _NonMaxSuppression.apply(boxes, scores, int(max_per_class),
                                    float(iou_thr), float(score_thr))
