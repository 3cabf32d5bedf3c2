"""Run the Triton selective-scan kernels in triton's CPU interpreter.

Run as a script (the test suite starts it in a subprocess): it sets
TRITON_INTERPRET=1 before anything imports triton, because triton reads the
variable when a kernel is decorated. Each case compares forward outputs and
every input gradient with the fp64 reference; the script prints one line per
case and exits with status 1 if any case fails.
"""
import os
import sys

os.environ['TRITON_INTERPRET'] = '1'

import torch  # noqa: E402

from mmmobilemamba.ops.scan import (  # noqa: E402
    available_backends, selective_scan, selective_scan_bidirectional)

#: (batch, dim, L, N, groups, with z, return_last_state, dtype)
UNI_CASES = [
    (2, 4, 1, 1, None, True, True, torch.float32),
    (2, 4, 7, 1, None, True, True, torch.float32),
    (1, 4, 64, 1, None, False, True, torch.float32),
    (2, 4, 33, 16, None, True, False, torch.float32),
    (2, 6, 20, 2, 3, True, True, torch.float32),
    (1, 4, 40, 1, None, True, False, torch.bfloat16),
    # several tiles, the last one partial
    (1, 4, 300, 1, None, True, True, torch.float32),
    (1, 4, 150, 16, None, False, True, torch.float32),
]
#: (batch, dim, L, N)
BI_CASES = [(2, 4, 7, 1), (1, 4, 50, 1), (1, 2, 17, 4), (1, 4, 300, 1)]


def _inputs(shapes, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for name, shape in shapes:
        t = torch.randn(*shape, generator=g)
        if name == 'A':
            t = -t.abs() * 2
        elif name in ('delta_bias', 'delta'):
            t = t * 0.5
        out.append(t.to(dtype))
    return out


def _compare(fn, ins, dtype, seed):
    """Max relative error of outputs and gradients against fp64 ref."""
    results = []
    for backend in ('ref', 'triton'):
        xs = [t.detach().clone().to(torch.float64 if backend == 'ref' else
                                    t.dtype).requires_grad_() for t in ins]
        outs = fn(xs, backend)
        outs = outs if isinstance(outs, tuple) else (outs, )
        g = torch.Generator().manual_seed(seed + 1)
        loss = sum((o.double() * torch.randn(o.shape, generator=g,
                                             dtype=torch.float64)).sum()
                   for o in outs)
        grads = torch.autograd.grad(loss, xs)
        results.append([o.double() for o in outs] +
                       [gr.double() for gr in grads])
    worst = 0.
    for ref, got in zip(*results):
        assert got.shape == ref.shape, (got.shape, ref.shape)
        scale = ref.abs().max().clamp_min(1e-6)
        worst = max(worst, ((got - ref).abs().max() / scale).item())
    return worst


def main() -> int:
    assert 'triton' in available_backends('cpu'), available_backends('cpu')
    failed = 0
    for n, (b, d, L, N, G, with_z, last, dtype) in enumerate(UNI_CASES):
        bc = (b, N, L) if G is None else (b, G, N, L)
        shapes = [('u', (b, d, L)), ('delta', (b, d, L)), ('A', (d, N)),
                  ('B', bc), ('C', bc), ('D', (d, )), ('z', (b, d, L)),
                  ('delta_bias', (d, ))]
        if not with_z:
            shapes = [s for s in shapes if s[0] != 'z']
        names = [name for name, _ in shapes]
        ins = _inputs(shapes, dtype, n)
        tol = 2e-2 if dtype == torch.bfloat16 else 2e-4

        def fn(xs, backend, names=names, last=last):
            kw = dict(zip(names, xs))
            return selective_scan(kw['u'], kw['delta'], kw['A'], kw['B'],
                                  kw['C'], kw['D'], kw.get('z'),
                                  kw['delta_bias'], True, last,
                                  backend=backend)

        err = _compare(fn, ins, dtype, n)
        ok = err < tol
        failed += not ok
        print(f'uni b={b} d={d} L={L} N={N} G={G} z={with_z} last={last} '
              f'{dtype}: max rel err {err:.2e} {"ok" if ok else "FAIL"}',
              flush=True)
    for n, (b, d, L, N) in enumerate(BI_CASES):
        shapes = [('u', (b, d, L)), ('delta', (b, 2, d, L)),
                  ('A', (2 * d, N)), ('B', (b, 2, N, L)), ('C', (b, 2, N, L)),
                  ('D', (2 * d, )), ('delta_bias', (2 * d, ))]
        ins = _inputs(shapes, torch.float32, 100 + n)
        err = _compare(
            lambda xs, be: selective_scan_bidirectional(
                *xs, delta_softplus=True, backend=be), ins, torch.float32,
            100 + n)
        ok = err < 2e-4
        failed += not ok
        print(f'bidirectional b={b} d={d} L={L} N={N}: max rel err '
              f'{err:.2e} {"ok" if ok else "FAIL"}', flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
