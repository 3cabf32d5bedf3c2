"""SS2D: layouts, initialisation, the two scan directions, batch
independence."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmmobilemamba.models import SS2D
from mmmobilemamba.ops.scan import selective_scan


def test_parameter_shapes_follow_the_release_layout():
    m = SS2D(112)  # T2 stage 1: d_inner 224, R = ceil(112 / 16) = 7
    assert m.d_inner == 224 and m.dt_rank == 7
    assert m.x_proj_weight.shape == (2, 9, 224)
    assert m.dt_proj_weight.shape == (2, 224, 7)
    assert m.dt_proj_bias.shape == (2, 224)
    assert m.A_logs.shape == (448, 1) and m.Ds.shape == (448, )
    assert m.in_proj.conv.weight.shape == (448, 112, 1, 1)
    assert m.out_proj.conv.weight.shape == (112, 224, 1, 1)
    assert m.out_norm.normalized_shape == (224, ) and m.out_norm.eps == 1e-5


def test_initialisation():
    m = SS2D(32)
    assert torch.all(m.Ds == 1) and torch.all(m.A_logs == 0)
    for p in (m.dt_proj_weight, m.dt_proj_bias):
        assert p.min() >= 0 and p.max() < 0.1
    bound = 1 / math.sqrt(m.d_inner)
    assert m.x_proj_weight.abs().max() <= bound
    assert m.x_proj_weight.std() > bound / 4  # not degenerate


def _naive_scan(m: SS2D, x: torch.Tensor) -> torch.Tensor:
    """docs/architecture.md#ss2d steps 3-6: direction 1 is computed on the
    reversed sequence and reversed back, each with the plain selective scan."""
    b, d, h, w = x.shape
    seq = x.flatten(2)
    r, n = m.dt_rank, m.d_state
    out = 0
    for k, s in enumerate((seq, seq.flip(-1))):
        proj = torch.einsum('bdl,cd->bcl', s, m.x_proj_weight[k])
        dt = torch.einsum('brl,dr->bdl', proj[:, :r], m.dt_proj_weight[k])
        part = slice(k * d, (k + 1) * d)
        y = selective_scan(s, dt, -torch.exp(m.A_logs[part]),
                           proj[:, r:r + n], proj[:, r + n:], m.Ds[part],
                           delta_bias=m.dt_proj_bias[k],
                           delta_softplus=True, backend='ref')
        out = out + (y if k == 0 else y.flip(-1))
    return out.view(b, d, h, w)


def test_scan_is_both_directions_summed_in_raster_order():
    torch.manual_seed(0)
    m = SS2D(16).double()
    with torch.no_grad():
        m.A_logs.normal_()
        m.Ds.normal_()
    x = torch.randn(2, m.d_inner, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(m.scan(x), _naive_scan(m, x))


def test_forward_matches_the_documented_pipeline():
    torch.manual_seed(1)
    m = SS2D(16).eval().double()
    x = torch.randn(1, 16, 4, 3, dtype=torch.float64)
    xz = m.in_proj(x)
    u, z = xz[:, :m.d_inner], xz[:, m.d_inner:]
    u = F.silu(m.dwconv(u))
    y = _naive_scan(m, u)
    y = F.layer_norm(y.permute(0, 2, 3, 1), (m.d_inner, ),
                     m.out_norm.weight, m.out_norm.bias, 1e-5)
    y = y.permute(0, 3, 1, 2) * F.silu(z)
    torch.testing.assert_close(m(x), m.out_proj(y))


def test_batch_independence():
    torch.manual_seed(2)
    m = SS2D(16).eval()
    x = torch.randn(3, 16, 5, 4)
    joint = m(x)
    for i in range(3):
        torch.testing.assert_close(joint[i:i + 1], m(x[i:i + 1]),
                                   rtol=1e-5, atol=1e-6)


def test_bad_width_raises():
    with pytest.raises(ValueError, match='d_model must be >= 1, got 0'):
        SS2D(0)
