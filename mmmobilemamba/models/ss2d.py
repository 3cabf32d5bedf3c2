"""SS2D: the two-direction 2-D selective scan (docs/architecture.md#ss2d).

The feature map is flattened row-major into a sequence of length L = H*W
and scanned by a selective state-space model forwards (direction 0) and
backwards (direction 1), each direction with its own parameters; the two
outputs are summed in raster order. The recurrence itself is
:func:`mmmobilemamba.ops.selective_scan_bidirectional`, which picks the
fastest backend for the device.

Every per-direction parameter is stored direction-major, as in the
release: ``A_logs[k * d_inner + d]``, ``Ds[k * d_inner + d]`` and
``dt_proj_bias[k, d]``; the x projection's output channels are ordered
dt (R), B (N), C (N).
"""
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmmobilemamba.ops.scan import (backend_table,
                                    selective_scan_bidirectional)
from .bricks import ConvBN

#: Number of scan directions (raster order and its reverse).
NUM_DIRECTIONS = 2


def set_scan_backend(model: nn.Module, backend: Optional[str]) -> int:
    """Make every SS2D in ``model`` use the selective-scan ``backend``.

    The one way to choose the backend of a built model (the backbone's
    ``scan_backend`` argument calls it). None restores the automatic
    choice (the fastest backend available for the input's device).

    Args:
        model (nn.Module): Any module; its SS2D submodules are changed.
        backend (str, optional): A name of the backend table
            (:func:`mmmobilemamba.ops.scan.backend_table`).

    Returns:
        int: How many SS2D modules were changed.
    """
    if backend is not None and backend not in backend_table():
        raise ValueError(f'unknown selective-scan backend {backend!r}; '
                         f'choose one of {sorted(backend_table())} or None')
    count = 0
    for module in model.modules():
        if isinstance(module, SS2D):
            module.scan_backend = backend
            count += 1
    return count


class SS2D(nn.Module):
    """Two-direction selective scan over a 2-D feature map.

    in_proj (Conv-BN 1x1) -> x, z; x = SiLU(DWConv3x3(x)); bidirectional
    selective scan of x; LayerNorm over channels; times SiLU(z); out_proj
    (Conv-BN 1x1).

    Args:
        d_model (int): Input and output channels.
        ssm_ratio (float): Expansion, d_inner = int(ssm_ratio * d_model).
            Defaults to 2.
        d_state (int): State size N per channel. Defaults to 1.
        dt_rank (int, optional): Rank R of the time-step projection; None
            means ceil(d_model / 16). Defaults to None.
        conv_kernel (int): Kernel of the depthwise conv before the scan.
            Defaults to 3.

    The selective-scan backend is not a constructor argument: it is set on
    a whole model with :func:`set_scan_backend` (the backbone's
    ``scan_backend`` config key does that); None, the default, picks the
    fastest backend for the input's device.
    """

    def __init__(self,
                 d_model: int,
                 ssm_ratio: float = 2,
                 d_state: int = 1,
                 dt_rank: Optional[int] = None,
                 conv_kernel: int = 3) -> None:
        super().__init__()
        if d_model < 1:
            raise ValueError(f'd_model must be >= 1, got {d_model}')
        d_inner = int(ssm_ratio * d_model)
        dt_rank = math.ceil(d_model / 16) if dt_rank is None else dt_rank
        k = NUM_DIRECTIONS
        self.d_model, self.d_inner = d_model, d_inner
        self.d_state, self.dt_rank = d_state, dt_rank
        self.scan_backend: Optional[str] = None

        self.in_proj = ConvBN(d_model, 2 * d_inner)
        self.dwconv = nn.Conv2d(d_inner, d_inner, conv_kernel,
                                padding=conv_kernel // 2, groups=d_inner)
        self.act = nn.SiLU()

        # Per direction: x -> (dt, B, C); dt -> d_inner time steps.
        self.x_proj_weight = nn.Parameter(
            torch.empty(k, dt_rank + 2 * d_state, d_inner))
        self.dt_proj_weight = nn.Parameter(torch.empty(k, d_inner, dt_rank))
        self.dt_proj_bias = nn.Parameter(torch.empty(k, d_inner))
        # A = -exp(A_logs) <= 0 keeps the recurrence decaying.
        self.A_logs = nn.Parameter(torch.zeros(k * d_inner, d_state))
        self.Ds = nn.Parameter(torch.ones(k * d_inner))

        self.out_norm = nn.LayerNorm(d_inner, eps=1e-5)
        self.out_proj = ConvBN(d_inner, d_model)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """Initialise the scan parameters (docs/architecture.md#ss2d)."""
        bound = 1. / math.sqrt(self.d_inner)  # what nn.Linear would give
        nn.init.uniform_(self.x_proj_weight, -bound, bound)
        nn.init.uniform_(self.dt_proj_weight, 0., 0.1)
        nn.init.uniform_(self.dt_proj_bias, 0., 0.1)
        nn.init.zeros_(self.A_logs)
        nn.init.ones_(self.Ds)

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        """The selective scan of a (B, d_inner, H, W) map, same shape out."""
        b, d, h, w = x.shape
        u = x.flatten(2)  # (B, d_inner, L), raster order
        k, c = self.x_proj_weight.shape[:2]
        # Position-wise projections, so they can be computed in raster order
        # for both directions; the scan op reverses time for direction 1.
        # Plain matmuls (both directions' x projection as one matrix) write
        # the layouts the scan reads, with no copies (the scan takes any
        # strides; a channels-last x gives a token-major u and y).
        x_dbl = torch.matmul(self.x_proj_weight.reshape(k * c, d), u)
        dts, bs, cs = torch.split(
            x_dbl.view(b, k, c, -1),
            [self.dt_rank, self.d_state, self.d_state], dim=2)
        # delta (B, k, d_inner, L) stored token-major, like u of a
        # channels-last map: the compiled scan then reads both along
        # channels (its scan calls in T2 at batch 32: 11 % less time).
        dts = torch.matmul(dts.transpose(-1, -2),
                           self.dt_proj_weight.transpose(-1, -2)
                           ).transpose(-1, -2)
        A = -torch.exp(self.A_logs.float())
        y = selective_scan_bidirectional(
            u, dts, A, bs.contiguous(), cs.contiguous(),
            self.Ds.float(), self.dt_proj_bias.flatten().float(),
            delta_softplus=True, backend=self.scan_backend, check=False)
        return y.view(b, d, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(x).chunk(2, dim=1)
        x = self.act(self.dwconv(x))
        y = self.scan(x)
        # LayerNorm over channels: channels-last for nn.LayerNorm.
        y = self.out_norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        y = y * self.act(z)
        return self.out_proj(y)

    def extra_repr(self) -> str:
        return (f'd_model={self.d_model}, d_inner={self.d_inner}, '
                f'd_state={self.d_state}, dt_rank={self.dt_rank}, '
                f'directions={NUM_DIRECTIONS}')
