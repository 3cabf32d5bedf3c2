"""Effective receptive field (ERF) maps, as in the paper's Figure 1.

For each image, the gradient of the centre pixel of a backbone feature map
(summed over channels) with respect to the input is taken; its absolute
value, summed over colour channels, is averaged over images. The map is shown
log-scaled, so that weak long-range contributions stay visible.
"""
from typing import Iterable, Optional

import numpy as np
import torch
import torch.nn as nn


def effective_receptive_field(backbone: nn.Module,
                              images: Iterable[torch.Tensor],
                              out_index: int = -1) -> np.ndarray:
    """Average |d centre(feature) / d input| over ``images``.

    Args:
        backbone (nn.Module): Returns a tensor or a tuple of NCHW features.
        images (Iterable[Tensor]): Normalised (1, 3, H, W) inputs, all the
            same size.
        out_index (int): Which returned feature map to probe. Defaults to -1
            (the deepest).

    Returns:
        np.ndarray: (H, W) float64 map, not normalised.
    """
    backbone.eval()
    total, count = None, 0
    for img in images:
        if img.dim() != 4 or img.shape[0] != 1:
            raise ValueError(f'images must be (1, 3, H, W), got '
                             f'{tuple(img.shape)}')
        x = img.clone().requires_grad_(True)
        feats = backbone(x)
        feat = feats[out_index] if isinstance(feats, (tuple, list)) else feats
        h, w = feat.shape[-2:]
        feat[:, :, h // 2, w // 2].sum().backward()
        grad = x.grad.abs().sum(dim=1)[0].double().cpu().numpy()
        if total is not None and grad.shape != total.shape:
            raise ValueError('all images must have the same size; got '
                             f'{grad.shape} after {total.shape}')
        total = grad if total is None else total + grad
        count += 1
    if count == 0:
        raise ValueError('no images given')
    return total / count


def log_scaled(erf: np.ndarray) -> np.ndarray:
    """log10(1 + erf) normalised to [0, 1] for display."""
    scaled = np.log10(erf / max(erf.max(), 1e-30) * 1e4 + 1.0)
    return scaled / max(scaled.max(), 1e-30)


def high_contribution_area(erf: np.ndarray, fraction: float = 0.9,
                           ) -> Optional[float]:
    """Share of input pixels that hold ``fraction`` of the total gradient:
    a number to compare receptive fields by (larger = wider)."""
    flat = np.sort(erf.ravel())[::-1]
    if flat.sum() <= 0:
        return None
    k = int(np.searchsorted(np.cumsum(flat) / flat.sum(), fraction)) + 1
    return k / flat.size
