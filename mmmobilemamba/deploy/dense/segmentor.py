"""A whole mmseg segmentor as one traceable module: image -> label map.

:class:`SegmentorLabels` runs the backbone, the neck and the decode head,
resizes the logits to the input size (bilinear, the head's
``align_corners``, as mmseg's ``predict`` does) and takes the argmax over
classes (a one-channel head: sigmoid > the head's ``threshold``). Output:
``labels`` (N, H, W) int64. The auxiliary heads are training-only and left
out.

mmseg's ``predict`` pads the input to the data preprocessor's
``size_divisor`` and crops the prediction back; the exported graph has a
fixed input size, so the export size should be a multiple of it (64 for
MobileMamba) and the host pads the image into it (``deploy/host.py``).
"""
import copy
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .pooling import replace_adaptive_pools


class SegmentorLabels(nn.Module):
    """An ``EncoderDecoder`` segmentor: normalised image (N, 3, H, W) ->
    label map (N, H, W) int64.

    Args:
        segmentor (nn.Module): mmseg ``EncoderDecoder`` (eval mode).
        size (Sequence[int]): (H, W) of the export: the adaptive poolings
            of the heads (PSPNet's pyramid) are replaced by fixed averages
            for it (:mod:`.pooling`).
    """

    def __init__(self, segmentor: nn.Module, size: Sequence[int]) -> None:
        super().__init__()
        head = getattr(segmentor, 'decode_head', None)
        if head is None or not hasattr(segmentor, 'extract_feat'):
            raise TypeError(f'{type(segmentor).__name__} is not an '
                            'encoder-decoder segmentor (no decode_head)')
        if isinstance(head, nn.ModuleList):
            raise NotImplementedError(
                f'{type(segmentor).__name__} has a cascade of decode heads '
                f'({[type(h).__name__ for h in head]}): there is no whole-'
                'model export for it; export --features and run the heads '
                'on the host')
        self.segmentor = copy.deepcopy(segmentor).eval()  # caller's stays
        self.align_corners = bool(getattr(head, 'align_corners', False))
        self.out_channels = int(getattr(head, 'out_channels',
                                        head.num_classes))
        self.threshold = float(getattr(head, 'threshold', None) or 0.3)
        self.size = tuple(int(s) for s in size)
        replace_adaptive_pools(self.segmentor)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits at the input size (N, C, H, W)."""
        feats = self.segmentor.extract_feat(x)
        logits = self.segmentor.decode_head(feats)
        return F.interpolate(logits, size=x.shape[-2:], mode='bilinear',
                             align_corners=self.align_corners)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(x)
        if self.out_channels == 1:
            return (logits[:, 0].sigmoid() > self.threshold).long()
        return logits.argmax(dim=1)
