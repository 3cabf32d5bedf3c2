"""One command to check MobileMamba on a machine with an NVIDIA GPU.

    python tools/analysis_tools/check_gpu.py [--only scan bench train infer
        dense] [--quick]

Runs, on ``cuda:0``, and prints one table (``| check | status | result |``;
progress goes to stderr):

* ``scan``: the Triton scan against the fp64 reference, values and every
  input gradient, fp32 and bf16 inputs, on the shapes of the scan tests
  (L from 1 to 4096, N = 1 and 16, grouped B/C, gate and last state, no
  optional inputs, delta*|A| up to 200 per step, both directions). One row
  per family and dtype with its worst relative error.
* ``bench``: ``benchmark_scan.py``'s measurement
  (:mod:`mmmobilemamba.analysis.scan_benchmark`) of the Triton and PyTorch
  backends on the SS2D shapes of T2, B1 and B4 (batch 1 and 32), with the
  achieved bandwidth as a share of the card's peak DRAM bandwidth.
* ``train``: T2 (192 px) and B1 (256 px) classifier training steps at
  batch 128 with AMP (bf16) on the Triton backend and on the PyTorch
  backend, from the same weights and data: img/s of each, and the first
  step's loss of the two must agree.
* ``infer``: inference throughput of the BN-fused T2 at batch 256, B1 at
  128 and B4 at 64 (fp32, at their resolutions), on both backends.
* ``dense``: one training iteration of the RetinaNet (B1) and of the
  Semantic FPN (B4) configs. Needs mmcv + mmdet / mmseg; where they are
  missing these rows are skipped with the reason.

It needs torch, triton, mmengine and this package. A row fails when a
check raises, a result is not finite or an error is over its tolerance;
speed rows never fail. The exit status is 1 if any row failed, 2 if there
is no CUDA device.
"""
import argparse
import copy
import math
import os.path as osp
import statistics
import sys
import time
import traceback
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

SECTIONS = ('scan', 'bench', 'train', 'infer', 'dense')
TOL = {torch.float32: 2e-4, torch.bfloat16: 3e-2}
#: (variant, resolution, batch) of the inference rows.
INFER = (('T2', 192, 256), ('B1', 256, 128), ('B4', 512, 64))
#: (variant, resolution) of the training rows (batch --train-batch).
TRAIN = (('T2', 192), ('B1', 256))


class Table:
    """Rows of the final table; each is also logged as it is added."""

    def __init__(self) -> None:
        self.rows: List[Tuple[str, str, str]] = []

    def add(self, check: str, status: str, result: str) -> None:
        self.rows.append((check, status, result))
        print(f'[{status}] {check}: {result}', file=sys.stderr, flush=True)

    def guard(self, check: str, fn: Callable[[], Tuple[str, str]]) -> None:
        """Add fn()'s (status, result); an exception is a failed row."""
        try:
            status, result = fn()
        except Exception as e:  # noqa: BLE001 (reported as a row)
            traceback.print_exc()
            status, result = 'FAIL', f'{type(e).__name__}: {e}'.replace(
                '\n', ' ')[:300]
        self.add(check, status, result)

    def render(self) -> str:
        lines = ['| check | status | result |', '|---|---|---|']
        lines += [f'| {c} | {s} | {r} |' for c, s, r in self.rows]
        return '\n'.join(lines)

    @property
    def failed(self) -> int:
        return sum(s == 'FAIL' for _, s, _ in self.rows)


#: Where the checks run; 'cpu' only for the script's own smoke test (with
#: TRITON_INTERPRET=1), see --device.
DEVICE = 'cuda'


def _sync() -> None:
    if DEVICE == 'cuda':
        torch.cuda.synchronize()


# --- scan: Triton against the reference ---------------------------------

#: family -> (batch, dim, L, N, groups, gate, last state, optional inputs,
#: large decay, bidirectional); the scan tests' shapes.
SCAN_CASES: Dict[str, List[tuple]] = {
    'lengths': [(2, 4, L, n, None, False, False, True, False, False)
                for L in (1, 2, 7, 64, 255) for n in (1, 16)] +
               [(1, 2, 1024, n, None, False, False, True, False, False)
                for n in (1, 16)] +
               [(1, 2, 4096, 1, None, False, False, True, False, False)],
    'grouped B/C, gate, last state': [
        (2, 6, 37, 2, g, True, True, True, False, False)
        for g in (None, 1, 3, 6)],
    'no D / delta_bias / softplus': [
        (2, 4, 19, 3, None, False, True, False, False, False)],
    'dt*|A| up to 200': [
        (2, 3, 200, 4, None, False, True, False, True, False)],
    'bidirectional': [(2, 4, L, n, None, False, False, True, False, True)
                      for L, n in ((1, 1), (7, 1), (64, 1), (255, 1),
                                   (1024, 1), (33, 16))],
}


def _scan_inputs(case, seed: int) -> Dict[str, Optional[torch.Tensor]]:
    b, d, L, n, groups, gate, _, optional, large, bi = case
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa
    k = 2 if bi else 1
    bc = ((b, 2, n, L) if bi else (b, n, L) if groups is None else
          (b, groups, n, L))
    ins = dict(u=r(b, d, L),
               delta=r(b, 2, d, L) * .5 if bi else r(b, d, L) * .5,
               A=-torch.rand(k * d, n, generator=g, dtype=torch.float64) * 2,
               B=r(*bc), C=r(*bc), D=r(k * d) if optional else None,
               z=r(b, d, L) if gate else None,
               delta_bias=r(k * d) * .1 if optional else None)
    if large:  # without softplus: dt in [0, 20], |A| in [0, 10]
        ins['delta'] = torch.rand(b, d, L, generator=g,
                                  dtype=torch.float64) * 20
        ins['A'] = -torch.rand(d, n, generator=g, dtype=torch.float64) * 10
        ins['A'][0, 0] = -10.
        ins['delta'][0, 0, :] = 20.  # exactly 200 per step on channel 0
    return ins


def _scan_run(case, ins, backend: str, dtype: torch.dtype, seed: int):
    from mmmobilemamba.ops.scan import (selective_scan,
                                        selective_scan_bidirectional)
    *_, last, optional, _, bi = case
    xs = {k: None if v is None else
          v.to(DEVICE, dtype if k not in ('A', 'D', 'delta_bias') or
               dtype == torch.float64 else torch.float32)
          .detach().requires_grad_() for k, v in ins.items()}
    softplus = optional
    if bi:
        outs = selective_scan_bidirectional(
            xs['u'], xs['delta'], xs['A'], xs['B'], xs['C'], xs['D'],
            xs['delta_bias'], delta_softplus=True, backend=backend)
    else:
        outs = selective_scan(*(xs[k] for k in ('u', 'delta', 'A', 'B', 'C',
                                                'D', 'z', 'delta_bias')),
                              softplus, last, backend=backend)
    outs = outs if isinstance(outs, tuple) else (outs, )
    g = torch.Generator().manual_seed(seed)
    loss = sum((o.double() * torch.randn(o.shape, generator=g,
                                         dtype=torch.float64).to(DEVICE)).sum()
               for o in outs)
    names = [k for k, v in xs.items() if v is not None]
    grads = torch.autograd.grad(loss, [xs[k] for k in names])
    return ([(f'out{i}', o) for i, o in enumerate(outs)] +
            [(f'd{k}', gr) for k, gr in zip(names, grads)])


def check_scan(table: Table, quick: bool) -> None:
    for family, cases in SCAN_CASES.items():
        if quick:
            cases = cases[:2]
        for dtype in (torch.float32, torch.bfloat16):
            def run(family=family, cases=cases, dtype=dtype):
                worst, where = 0., ''
                for i, case in enumerate(cases):
                    ins = _scan_inputs(case, i)
                    got = _scan_run(case, ins, 'triton', dtype, i + 1)
                    ref = _scan_run(case, ins, 'ref', torch.float64, i + 1)
                    for (name, a), (_, b) in zip(got, ref):
                        if not torch.isfinite(a).all():
                            return 'FAIL', f'{name} not finite at {case[:4]}'
                        err = ((a.double() - b).abs().max() /
                               b.abs().max().clamp_min(1e-12)).item()
                        if err > worst:
                            worst, where = err, f'{name} at (b, d, L, N) = ' \
                                f'{case[:4]}'
                ok = worst < TOL[dtype]
                return ('ok' if ok else 'FAIL',
                        f'{len(cases)} shapes, worst rel. err {worst:.1e} '
                        f'({where}; tol {TOL[dtype]:.0e})')
            name = str(dtype).replace('torch.', '')
            table.guard(f'scan vs ref: {family}, {name}', run)


# --- bench: benchmark_scan's measurement --------------------------------

def check_bench(table: Table, quick: bool) -> None:
    from mmmobilemamba.analysis import scan_benchmark as bench
    peak = bench.card_bandwidth() if DEVICE == 'cuda' else math.nan
    batches = (32, ) if quick else (1, 32)
    variants = ('B1', ) if quick else ('T2', 'B1', 'B4')
    min_time = 0.1 if quick else 0.3
    for variant in variants:
        size = bench.VARIANTS[variant][0]
        for stage, (dim, length) in enumerate(bench.ss2d_shapes(variant),
                                              1):
            for batch in batches:
                def run(dim=dim, length=length, batch=batch):
                    res = {be: bench.measure(be, batch, dim, length, DEVICE,
                                             min_time)
                           for be in ('triton', 'torch')}
                    t = res['triton']
                    share = ('' if math.isnan(peak) else
                             f' ({100 * t["fwd_gbs"] / peak:.0f} / '
                             f'{100 * t["fwd_bwd_gbs"] / peak:.0f} % of '
                             f'{peak:.0f})')
                    return 'info', (
                        f'triton fwd {t["fwd"] * 1e3:.3f} ms, f+b '
                        f'{t["fwd_bwd"] * 1e3:.3f} ms, '
                        f'{t["fwd_gbs"]:.0f} / {t["fwd_bwd_gbs"]:.0f} GB/s'
                        f'{share}; torch fwd {res["torch"]["fwd"] * 1e3:.3f}'
                        f' ms, f+b {res["torch"]["fwd_bwd"] * 1e3:.3f} ms')
                table.guard(f'scan bench {variant}@{size} s{stage} b{batch} '
                            f'd{dim} L{length}', run)


# --- train and infer: classifiers built without mmpretrain ---------------

class Classifier(nn.Module):
    """MobileMamba + global pooling + BatchNorm1d + Linear (the release's
    head), built from torch and this package alone."""

    def __init__(self, arch: str, num_classes: int = 1000) -> None:
        super().__init__()
        from mmmobilemamba.models.backbones.mobilemamba import MobileMamba
        self.backbone = MobileMamba(arch, out_indices=(3, ), init_cfg=None)
        width = self.backbone.embed_dims[-1]
        self.norm = nn.BatchNorm1d(width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone(x)[-1].mean((2, 3))
        return self.fc(self.norm(x))


def set_scan_backend(model: nn.Module, backend: Optional[str]) -> nn.Module:
    from mmmobilemamba.models import set_scan_backend as set_backend
    set_backend(model, backend)
    return model


def train_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                steps: int, warmup: int) -> Tuple[float, float, bool]:
    """First step's loss, seconds per timed step, all grads finite."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first, finite, times = None, True, []
    for i in range(warmup + steps):
        _sync()
        start = time.perf_counter()
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if first is None:
            first = loss.item()
            finite = all(torch.isfinite(p.grad).all().item()
                         for p in model.parameters() if p.grad is not None)
        opt.step()
        _sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return first, statistics.median(times), finite


def check_train(table: Table, quick: bool, batch: int) -> None:
    for variant, size in TRAIN:
        def run(variant=variant, size=size):
            torch.manual_seed(0)
            base = Classifier(variant).to(DEVICE).train()
            gen = torch.Generator(device=DEVICE).manual_seed(0)
            x = torch.randn(batch, 3, size, size, device=DEVICE,
                            generator=gen)
            y = torch.randint(0, 1000, (batch, ), device=DEVICE,
                              generator=gen)
            res = {}
            for backend in ('triton', 'torch'):
                model = set_scan_backend(copy.deepcopy(base), backend)
                res[backend] = train_steps(model, x, y, 2 if quick else 10,
                                           1 if quick else 3)
                del model
            (l_t, s_t, f_t), (l_p, s_p, f_p) = res['triton'], res['torch']
            diff = abs(l_t - l_p) / max(abs(l_p), 1e-12)
            ok = f_t and f_p and math.isfinite(l_t) and diff < 2e-2
            return ('ok' if ok else 'FAIL',
                    f'triton {batch / s_t:.0f} img/s, torch {batch / s_p:.0f}'
                    f' img/s ({s_p / s_t:.2f}x); step-1 loss {l_t:.4f} vs '
                    f'{l_p:.4f} (rel. diff {diff:.1e}, tol 2e-2); grads '
                    f'finite: {f_t and f_p}')
        table.guard(f'train {variant}@{size} b{batch} AMP bf16', run)


def check_infer(table: Table, quick: bool) -> None:
    from mmmobilemamba.analysis.random_norms import randomize_norms
    from mmmobilemamba.deploy import convert
    for variant, size, batch in INFER:
        def run(variant=variant, size=size, batch=batch):
            torch.manual_seed(0)
            model = convert(randomize_norms(Classifier(variant)), 'fused')
            model = model.to(DEVICE)
            x = torch.randn(batch, 3, size, size, device=DEVICE)
            speed, outs = {}, {}
            for backend in ('triton', 'torch'):
                set_scan_backend(model, backend)
                with torch.inference_mode():
                    for _ in range(1 if quick else 2):
                        outs[backend] = model(x)
                    rounds, iters = [], 1 if quick else 3
                    for _ in range(2 if quick else 5):
                        _sync()
                        start = time.perf_counter()
                        for _ in range(iters):
                            model(x)
                        _sync()
                        rounds.append((time.perf_counter() - start) / iters)
                speed[backend] = batch / statistics.median(rounds)
            a, b = outs['triton'].double(), outs['torch'].double()
            err = ((a - b).abs().max() / b.abs().max()).item()
            ok = torch.isfinite(a).all().item() and err < 1e-3
            return ('ok' if ok else 'FAIL',
                    f'triton {speed["triton"]:.0f} img/s, torch '
                    f'{speed["torch"]:.0f} img/s; logits rel. diff '
                    f'{err:.1e} (tol 1e-3)')
        table.guard(f'infer {variant}@{size} b{batch} fused fp32', run)


# --- dense: one training iteration of a detector and a segmentor ---------

def _missing(*modules: str) -> Optional[str]:
    for name in modules:
        try:
            __import__(name)
        except Exception as e:  # noqa: BLE001 (any import failure skips)
            return f'{name} cannot be imported ({type(e).__name__}: {e})'
    return None


def _dense_step(model: nn.Module, data: dict) -> Tuple[float, float]:
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(model).to(DEVICE).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    times, loss = [], None
    for _ in range(3):  # the first one compiles kernels
        _sync()
        start = time.perf_counter()
        batch = model.data_preprocessor(data, True)
        losses = model(**batch, mode='loss')
        loss, _ = model.parse_losses(losses)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync()
        times.append(time.perf_counter() - start)
    return loss.item(), min(times[1:])


def check_dense(table: Table) -> None:
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    def retinanet():
        import mmmobilemamba  # noqa: F401  (registration)
        from mmdet.registry import MODELS
        from mmdet.testing import demo_mm_inputs
        cfg = Config.fromfile(osp.join(
            REPO, 'configs', 'retinanet',
            'retinanet_mobilemamba-b1_fpn_1x_coco.py'))
        cfg.model.backbone.init_cfg = None
        init_default_scope('mmdet')
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        data = demo_mm_inputs(2, image_shapes=[(3, 800, 1333)] * 2,
                              num_items=[3, 5], num_classes=80)
        loss, secs = _dense_step(model, data)
        ok = math.isfinite(loss)
        return ('ok' if ok else 'FAIL', f'batch 2 at 800x1333: loss '
                f'{loss:.3f}, {secs * 1e3:.0f} ms per iteration')

    def fpn():
        import mmmobilemamba  # noqa: F401  (registration)
        from mmengine.structures import PixelData
        from mmseg.registry import MODELS
        from mmseg.structures import SegDataSample
        cfg = Config.fromfile(osp.join(
            REPO, 'configs', 'sem-fpn',
            'sem-fpn_mobilemamba-b4_160k_ade20k-512x512.py'))
        cfg.model.backbone.init_cfg = None
        init_default_scope('mmseg')
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        h = w = 512
        samples, imgs = [], []
        for _ in range(4):
            s = SegDataSample(metainfo=dict(ori_shape=(h, w),
                                            img_shape=(h, w),
                                            pad_shape=(h, w)))
            s.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, h, w)))
            samples.append(s)
            imgs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8))
        loss, secs = _dense_step(model, dict(inputs=imgs,
                                             data_samples=samples))
        ok = math.isfinite(loss)
        return ('ok' if ok else 'FAIL', f'batch 4 at 512x512: loss '
                f'{loss:.3f}, {secs * 1e3:.0f} ms per iteration')

    for name, fn, needs in (('RetinaNet B1', retinanet, ('mmcv', 'mmdet')),
                            ('Semantic FPN B4', fpn, ('mmcv', 'mmseg'))):
        reason = _missing(*needs)
        if reason:
            table.add(f'train iteration {name}', 'skip', reason)
        else:
            table.guard(f'train iteration {name}', fn)


def no_cuda_reason() -> Optional[str]:
    """Why this machine cannot run the checks, or None."""
    if torch.cuda.is_available():
        return None
    built = torch.version.cuda
    return ('no CUDA device is available (torch.cuda.is_available() is '
            f'False; torch {torch.__version__} was built '
            f'{"with CUDA " + built if built else "without CUDA"}). '
            'check_gpu.py needs a machine with an NVIDIA GPU; without one, '
            'run tools/analysis_tools/compile_triton.py to check that the '
            'Triton kernels compile.')


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--only', nargs='+', choices=SECTIONS,
                        default=list(SECTIONS), help='sections to run')
    parser.add_argument('--quick', action='store_true',
                        help='fewer shapes and repeats (a smoke run)')
    parser.add_argument('--train-batch', type=int, default=128,
                        help='batch of the training rows (authors: 128)')
    parser.add_argument('--device', default='cuda', choices=['cuda', 'cpu'],
                        help=argparse.SUPPRESS)  # cpu: smoke test only
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    reason = no_cuda_reason() if DEVICE == 'cuda' else None
    if reason:
        print(f'error: {reason}', file=sys.stderr)
        return 2
    from mmmobilemamba.ops.scan import triton_scan
    status = triton_scan.status(torch.device(DEVICE))
    if status is not True:
        print(f'error: the triton scan backend cannot run: {status}',
              file=sys.stderr)
        return 2
    import triton
    if DEVICE == 'cuda':
        props = torch.cuda.get_device_properties(0)
        print(f'{torch.cuda.get_device_name(0)} (sm_{props.major}'
              f'{props.minor}, {props.total_memory / 2**30:.0f} GiB); torch '
              f'{torch.__version__} (CUDA {torch.version.cuda}); triton '
              f'{triton.__version__}', flush=True)
    table = Table()
    start = time.perf_counter()
    if 'scan' in args.only:
        check_scan(table, args.quick)
    if 'bench' in args.only:
        check_bench(table, args.quick)
    if 'train' in args.only:
        check_train(table, args.quick, args.train_batch)
    if 'infer' in args.only:
        check_infer(table, args.quick)
    if 'dense' in args.only:
        check_dense(table)
    print(table.render())
    print(f'{len(table.rows)} rows, {table.failed} failed; '
          f'{time.perf_counter() - start:.0f} s')
    return 1 if table.failed else 0


if __name__ == '__main__':
    sys.exit(main())
