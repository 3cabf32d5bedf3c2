"""Adaptive average pooling at a fixed input size, in standard operators.

PSPNet's pyramid pools the stride-64 map to 1, 2, 3 and 6 cells. ONNX's
TorchScript exporter refuses ``adaptive_avg_pool2d`` when the output size
does not divide the input size, and XNNPACK takes no adaptive pooling. At
a fixed input size each adaptive pooling is a fixed linear map: cell ``i``
of ``n`` over a length ``L`` averages positions ``floor(i L / n)`` to
``ceil((i + 1) L / n)`` (PyTorch's rule), so the pooling is ``P_h @ x @
P_w^T`` with two constant averaging matrices, or a plain ``avg_pool2d``
where ``n`` divides ``L``. :class:`FixedAdaptiveAvgPool2d` computes it
so for the size it meets when traced.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def averaging_matrix(length: int, cells: int) -> torch.Tensor:
    """(cells, length): row ``i`` averages PyTorch's adaptive-pooling
    window ``i`` of a length ``length``."""
    mat = torch.zeros(cells, length)
    for i in range(cells):
        start = (i * length) // cells
        end = math.ceil((i + 1) * length / cells)
        mat[i, start:end] = 1. / (end - start)
    return mat


class FixedAdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` written with ``avg_pool2d`` (output divides
    input), a global mean (output 1) or two constant matrix products."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.output_size
        oh, ow = (out, out) if isinstance(out, int) else out
        h, w = int(x.shape[-2]), int(x.shape[-1])
        oh = h if oh is None else int(oh)
        ow = w if ow is None else int(ow)
        if (oh, ow) == (1, 1):
            return x.mean(dim=(-2, -1), keepdim=True)
        if h % oh == 0 and w % ow == 0:
            kernel = (h // oh, w // ow)
            return F.avg_pool2d(x, kernel, kernel)
        mat_h = averaging_matrix(h, oh).to(x)
        mat_w = averaging_matrix(w, ow).to(x)
        return torch.matmul(torch.matmul(mat_h, x), mat_w.t())


def replace_adaptive_pools(model: nn.Module) -> int:
    """Give every ``nn.AdaptiveAvgPool2d`` of ``model`` the class
    :class:`FixedAdaptiveAvgPool2d` (in place; same function, no state).
    Returns how many were changed."""
    count = 0
    for module in model.modules():
        if type(module) is nn.AdaptiveAvgPool2d:
            module.__class__ = FixedAdaptiveAvgPool2d
            count += 1
    return count
