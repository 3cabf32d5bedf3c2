"""The native-scan pass of the ``'onnx-native'`` and ``'xnnpack-native'``
targets: SS2D's scan as one ``mmmobilemamba::selective_scan_native`` node
(:mod:`..native.ops`), which the runtime kernel libraries implement
(ONNX Runtime custom op, ExecuTorch kernel). It runs after the portable
pass: everything around the scan keeps the portable forms, so the rest of
the graph is delegated as in the portable targets.
"""
import torch

from mmmobilemamba.models.ss2d import NUM_DIRECTIONS
from ..native.ops import selective_scan_native
from . import Pass, recast
from .portable import SS2DPortable, ss2d_projections


class SS2DNative(SS2DPortable):
    """SS2D with the scan as one runtime-native operator."""

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        dts, bs, cs = ss2d_projections(self, x)
        k, d = NUM_DIRECTIONS, self.d_inner
        y = selective_scan_native(
            x.reshape(b, d, h * w), dts, -torch.exp(self.A_logs.float()
                                                    ).reshape(k, d, -1),
            bs, cs, self.Ds.float().reshape(k, d),
            self.dt_proj_bias.float().reshape(k, d))
        return y.reshape(b, d, h, w)


PASS = Pass('native', {SS2DPortable: lambda m: recast(m, SS2DNative)})
