"""The native-scan pass of the ``'onnx-native'`` and ``'xnnpack-native'``
targets: SS2D's scan, LayerNorm and gate as one
``mmmobilemamba::selective_scan_native.gated`` node (:mod:`..native.ops`),
which the runtime kernel libraries implement (ONNX Runtime custom op,
ExecuTorch kernel). It runs after the portable pass: everything around
the scan keeps the portable forms, so the rest of the graph is delegated as
in the portable targets.
"""
import torch

from mmmobilemamba.models.ss2d import NUM_DIRECTIONS
from ..native.ops import selective_scan_native, selective_scan_norm_gate_native
from . import Pass, recast
from .portable import SS2DPortable, ss2d_projections


class SS2DNative(SS2DPortable):
    """SS2D with the scan, and what follows it up to ``out_proj``, as one
    runtime-native operator."""

    def scan_inputs(self, x: torch.Tensor):
        """The operator's scan inputs from SS2D's map ``x`` (b, d, H, W)."""
        b, _, h, w = x.shape
        dts, bs, cs = ss2d_projections(self, x)
        k, d = NUM_DIRECTIONS, self.d_inner
        return (x.reshape(b, d, h * w), dts,
                -torch.exp(self.A_logs.float()).reshape(k, d, -1), bs, cs,
                self.Ds.float().reshape(k, d),
                self.dt_proj_bias.float().reshape(k, d))

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        return selective_scan_native(*self.scan_inputs(x)).reshape(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xz = self.in_proj(x)
        x, z = xz[:, :self.d_inner], xz[:, self.d_inner:]
        x = self.act(self.dwconv(x))
        b, d, h, w = x.shape
        norm = self.out_norm
        weight, bias = (torch.full((d, ), fill, device=x.device)
                        if p is None else p.float()
                        for p, fill in ((norm.weight, 1.), (norm.bias, 0.)))
        y = selective_scan_norm_gate_native(
            *self.scan_inputs(x), z.reshape(b, d, h * w), weight, bias,
            norm.eps)
        return self.out_proj(y.reshape(b, d, h, w))


PASS = Pass('native', {SS2DPortable: lambda m: recast(m, SS2DNative)})
