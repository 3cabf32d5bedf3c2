"""The compiled depthwise convolution: values against ``F.conv2d``, the
custom op's registration, when it is used, and the module that uses it."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmmobilemamba.deploy.forms.eager_cpu import (CompiledDepthwiseConv2d,
                                                  cpu_conv)
from mmmobilemamba.ops.depthwise_conv import (MAX_COMPILED_WORK,
                                              depthwise_conv2d,
                                              depthwise_missing,
                                              use_compiled)

needs_ext = pytest.mark.skipif(
    depthwise_missing() is not None,
    reason='the compiled depthwise convolution is not built')
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _inputs(b, c, h, w, k, bias=True, channels_last=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(c, 1, k, k, generator=g)
    return x, weight, torch.randn(c, generator=g) if bias else None


@needs_ext
@pytest.mark.parametrize('b,c,h,w,k,stride,pad', [
    (1, 272, 6, 6, 3, 1, 1), (1, 368, 3, 3, 3, 1, 1), (1, 768, 3, 3, 5, 1, 2),
    (1, 448, 6, 6, 7, 1, 3), (1, 1088, 6, 6, 3, 2, 1), (3, 17, 7, 5, 3, 1, 1),
    (2, 33, 9, 4, 3, 2, 1), (1, 5, 1, 1, 3, 1, 1), (2, 8, 5, 7, 5, 2, 0),
    (1, 7, 4, 6, 3, 1, 2)])
@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('channels_last', [True, False])
def test_op_matches_conv2d(b, c, h, w, k, stride, pad, bias, channels_last):
    x, weight, bias_t = _inputs(b, c, h, w, k, bias, channels_last)
    want = F.conv2d(x, weight, bias_t, stride, pad, groups=c)
    got = torch.ops.mmmobilemamba.depthwise_conv2d(
        x, weight, bias_t, [stride, stride], [pad, pad])
    assert got.shape == want.shape
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@needs_ext
@pytest.mark.parametrize('start,stop', [(0, 24), (24, 40), (7, 33)])
def test_op_reads_a_channel_slice_of_a_channels_last_map(start, stop):
    """A channel slice of a channels-last map (channels contiguous, pixels
    strided by the full channel count) is read without a copy."""
    full, _, _ = _inputs(2, 40, 7, 9, 3, seed=3)
    x = full[:, start:stop]
    assert x.stride(1) == 1 and not x.is_contiguous(
        memory_format=torch.channels_last)
    _, weight, bias = _inputs(1, stop - start, 1, 1, 3, seed=4)
    for stride in (1, 2):
        want = F.conv2d(x, weight, bias, stride, 1, groups=stop - start)
        got = torch.ops.mmmobilemamba.depthwise_conv2d(
            x, weight, bias, [stride, stride], [1, 1])
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@needs_ext
def test_op_thread_count_does_not_change_the_result():
    x, weight, bias = _inputs(4, 96, 11, 13, 3)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.ops.mmmobilemamba.depthwise_conv2d(x, weight, bias,
                                                        [1, 1], [1, 1])
        torch.set_num_threads(2)
        two = torch.ops.mmmobilemamba.depthwise_conv2d(x, weight, bias,
                                                        [1, 1], [1, 1])
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, two)


@needs_ext
def test_opcheck():
    x, weight, bias = _inputs(1, 12, 5, 6, 3)
    torch.library.opcheck(torch.ops.mmmobilemamba.depthwise_conv2d.default,
                          (x, weight, bias, [1, 1], [1, 1]),
                          test_utils=('test_schema', 'test_faketensor'))


@needs_ext
@pytest.mark.parametrize('bad,match', [
    (lambda x, w, b: (x.double(), w.double(), None), 'float32'),
    (lambda x, w, b: (x, w[:4], b), 'weight must be'),
    (lambda x, w, b: (x[0], w, b), r'\(B, C, H, W\)'),
    (lambda x, w, b: (x, w, b[:3]), 'bias must be'),
])
def test_op_rejects_bad_input(bad, match):
    x, weight, bias = _inputs(1, 6, 5, 5, 3)
    with pytest.raises(RuntimeError, match=match):
        torch.ops.mmmobilemamba.depthwise_conv2d(*bad(x, weight, bias),
                                                 [1, 1], [1, 1])


@needs_ext
def test_op_rejects_a_kernel_larger_than_the_map():
    x, weight, bias = _inputs(1, 6, 2, 2, 5)
    with pytest.raises(RuntimeError, match='does not fit'):
        torch.ops.mmmobilemamba.depthwise_conv2d(x, weight, bias, [1, 1],
                                                 [0, 0])


@needs_ext
def test_when_the_compiled_kernel_is_used():
    x, weight, _ = _inputs(1, 64, 6, 6, 3)
    args = ((1, 1), (1, 1), (1, 1))
    with torch.inference_mode():
        assert use_compiled(x, weight, *args)
        assert not use_compiled(x.double(), weight.double(), *args)
        assert not use_compiled(x[:, :8], weight, *args)  # wrong channels
        assert not use_compiled(x, torch.randn(64, 1, 7, 7), (1, 1), (3, 3),
                                (1, 1))  # 7x7: oneDNN is faster
        assert not use_compiled(x, weight, (1, 1), (1, 1), (2, 2))
        big = torch.randn(1, 64, 64, 64)
        assert 64 * 64 * 64 * 9 > MAX_COMPILED_WORK
        assert not use_compiled(big, weight, *args)
    # gradients wanted: the standard op, which autograd knows
    assert not use_compiled(x, weight.requires_grad_(), *args)
    with torch.no_grad():
        assert use_compiled(x, weight, *args)


@pytest.mark.parametrize('padding,stride', [(1, 1), (1, 2), ('same', 1),
                                            ('valid', 1), ('valid', 2)])
def test_module_equals_conv2d(padding, stride):
    torch.manual_seed(0)
    conv = nn.Conv2d(24, 24, 3, stride, padding, groups=24)
    dw = cpu_conv(nn.Conv2d(24, 24, 3, stride, padding, groups=24))
    assert type(dw) is CompiledDepthwiseConv2d
    assert dw.state_dict().keys() == conv.state_dict().keys()
    dw.load_state_dict(conv.state_dict())
    x = torch.randn(2, 24, 7, 9)
    with torch.inference_mode():
        torch.testing.assert_close(dw(x), conv(x), rtol=1e-5, atol=1e-5)
    # training: same values and gradients through F.conv2d
    x.requires_grad_()
    dw(x).square().sum().backward()
    gx, gw = x.grad.clone(), dw.weight.grad.clone()
    x.grad = None
    conv(x).square().sum().backward()
    torch.testing.assert_close(gx, x.grad)
    torch.testing.assert_close(gw, conv.weight.grad)


def test_module_falls_back_for_an_even_same_kernel():
    conv = nn.Conv2d(4, 4, 4, padding='same', groups=4, bias=False)
    dw = cpu_conv(nn.Conv2d(4, 4, 4, padding='same', groups=4, bias=False))
    assert type(dw) is nn.Conv2d  # asymmetric padding: left as it is
    conv.load_state_dict(dw.state_dict())
    x = torch.randn(1, 4, 5, 5)
    with torch.inference_mode():
        torch.testing.assert_close(dw(x), conv(x))


def test_functional_form_equals_conv2d():
    x, weight, bias = _inputs(2, 10, 6, 5, 3, channels_last=False)
    with torch.inference_mode():
        got = depthwise_conv2d(x, weight, bias, (2, 2), (1, 1))
    torch.testing.assert_close(
        got, F.conv2d(x, weight, bias, 2, 1, groups=10), rtol=1e-5,
        atol=1e-5)


def test_without_the_extension_says_so_once():
    code = ('import sys\n'
            'sys.modules["mmmobilemamba.ops._dwconv_cpu"] = None\n'
            'import torch, mmmobilemamba, mmmobilemamba.models\n'
            'from mmmobilemamba.deploy.forms.eager_cpu import cpu_conv\n'
            'm = cpu_conv(torch.nn.Conv2d(4, 4, 3, padding=1, groups=4))\n'
            'with torch.inference_mode():\n'
            '    print("shape", tuple(m(torch.randn(1, 4, 5, 5)).shape))\n')
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO, env.get('PYTHONPATH')) if p)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'shape (1, 4, 5, 5)' in out.stdout
    notes = [line for line in out.stderr.splitlines()
             if 'compiled depthwise convolution' in line]
    assert len(notes) == 1, out.stderr[-3000:]
    assert 'F.conv2d instead' in notes[0]
