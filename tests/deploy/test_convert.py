"""``mmmobilemamba.deploy.convert``: every target computes what the training
form computes (fp32, relative 1e-5) for T2 and B1 at batch 1 and 8 and odd
sizes, with the forms each target is meant to use; fused checkpoints load
into ``deploy=True`` models; detectors and segmentors convert too."""
import os.path as osp

import pytest
import torch
import torch.nn as nn

from mmmobilemamba.deploy import TARGETS, convert
from mmmobilemamba.deploy.forms.native import SS2DNative
from mmmobilemamba.deploy.forms.eager_cpu import (ChannelAffine,
                                                  ChannelsLastStem,
                                                  CompiledDepthwiseConv2d,
                                                  HaarWaveletMatmul,
                                                  PointwiseConv2d,
                                                  SqueezeExciteLinear)
from mmmobilemamba.deploy.forms.fused import FusedConv
from mmmobilemamba.deploy.forms.portable import (ChannelAffineMulAdd,
                                                 HaarWaveletGrouped,
                                                 MRFFISlices, SS2DPortable)
from mmmobilemamba.models import MobileMamba
from mmmobilemamba.models.bricks import ConvBN
from ..helpers import REPO, build_classifier, randomize_norms, rel_err

TOL = 1e-5  # relative, fp32


def _trained_like(arch: str, **kwargs) -> nn.Module:
    """Random BN statistics, scales and decays: every branch contributes."""
    torch.manual_seed(0)
    model = randomize_norms(MobileMamba(arch, out_indices=(0, 1, 2, 3),
                                        **kwargs)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(('wavelet_scale', 'base_scale')):
                p.uniform_(0.5, 1.5)
            if name.endswith('A_logs'):
                p.uniform_(-1., 1.5)
    return model


@pytest.fixture(scope='module', params=['T2', 'B1'])
def backbone(request):
    return request.param, _trained_like(request.param)


@pytest.mark.parametrize('target', sorted(TARGETS))
@pytest.mark.parametrize('batch,size', [(1, (97, 75)), (8, (67, 45)),
                                        (1, (33, 32))])
def test_every_target_equals_the_training_form(backbone, target, batch,
                                               size):
    arch, model = backbone
    converted = convert(model, target)
    assert converted is not model  # a copy: the training model is intact
    assert not any(isinstance(m, nn.BatchNorm2d)
                   for m in converted.modules())
    x = torch.rand(batch, 3, *size, generator=torch.Generator()
                   .manual_seed(batch))
    with torch.no_grad():
        ref = model(x)
        got = converted(x)
        for a, b in zip(got, ref):
            assert a.shape == b.shape
            assert rel_err(a, b) < TOL, (arch, target)
        # samples stay independent in the batched forms
        for a, b in zip(converted(x[-1:]), got):
            assert rel_err(a[0], b[-1]) < TOL


def _types(model: nn.Module) -> set:
    return {type(m) for m in model.modules()}


def test_each_target_uses_its_forms():
    model = _trained_like('T2', local_kernel_sizes=((3, 5), 5, 3))
    fused = convert(model, 'fused')
    assert FusedConv in _types(fused) and ConvBN not in _types(fused)
    cpu = convert(model, 'eager-cpu')
    assert {ChannelAffine, PointwiseConv2d, CompiledDepthwiseConv2d,
            SqueezeExciteLinear, HaarWaveletMatmul,
            ChannelsLastStem} <= _types(cpu)
    convs = [m.conv for m in cpu.modules() if isinstance(m, FusedConv)]
    # one depthwise 1x1 per MK-DeConv (5 blocks in T2)
    assert sum(isinstance(c, ChannelAffine) for c in convs) == 5
    assert all(isinstance(c, (ChannelAffine, PointwiseConv2d))
               for c in convs if c.kernel_size == (1, 1))
    # per block: 2 FFNs, MRFFI's projection, SS2D's in/out projections;
    # per downsampling: 2 FFNs, PatchMerging's expansion and projection
    assert sum(isinstance(c, PointwiseConv2d)
               for c in convs) == 5 * (4 + 1 + 2) + 2 * (4 + 2)
    # the ReLUs after FFN.pw1 and PatchMerging.expand live in the products
    assert sum(getattr(c, 'fused_relu', False) for c in convs) == 5 * 2 + 2 * 3
    for target in ('onnx', 'xnnpack'):
        port = convert(model, target)
        assert {SS2DPortable, MRFFISlices, ChannelAffineMulAdd,
                HaarWaveletGrouped} <= _types(port)
        assert not _types(port) & {PointwiseConv2d, ChannelAffine,
                                   CompiledDepthwiseConv2d}
        assert all(m.scan_backend == 'portable' for m in port.modules()
                   if isinstance(m, SS2DPortable))
        assert SS2DNative not in _types(port)
        # the native targets: the same forms, the scan as one operator
        native = _types(convert(model, target + '-native'))
        assert native - {SS2DNative} == _types(port) - {SS2DPortable}
    with torch.no_grad():
        graph = torch.export.export(
            convert(model, 'xnnpack-native'),
            (torch.randn(1, 3, 64, 64), )).graph
    calls = [n.target for n in graph.nodes if n.op == 'call_function']
    # one scan operator (with the norm and gate) per SS2D (T2: one per
    # block), no portable scan
    assert calls.count(
        torch.ops.mmmobilemamba.selective_scan_native.gated) == 5
    # exp only in A = -exp(A_logs), once per SS2D: no doubling scan
    assert calls.count(torch.ops.aten.exp.default) == 5
    # the training model is untouched by all of this
    assert ConvBN in _types(model) and FusedConv not in _types(model)


def test_pointwise_form_reads_and_writes_channels_last():
    m = PointwiseConv2d(8, 4, 1)
    x = torch.randn(2, 8, 5, 3).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = m(x)
        assert rel_err(y, nn.functional.conv2d(x, m.weight, m.bias)) < TOL
    assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('size', [(12, 12), (7, 9), (1, 1), (6, 5)])
def test_wavelet_forms_match_the_convolutions(size, channels_last):
    from mmmobilemamba.ops.wavelet import HaarWavelet2d
    x = torch.randn(2, 5, *size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    conv = HaarWavelet2d(5)
    bands = conv.dwt(x)
    for target, form in (('eager-cpu', HaarWaveletMatmul),
                         ('onnx', HaarWaveletGrouped)):
        fast = convert(conv, target)
        assert type(fast) is form
        assert rel_err(fast.dwt(x), bands) < 1e-6
        assert rel_err(fast.idwt(bands, size), conv.idwt(bands, size)) < 1e-6
        assert rel_err(fast.idwt(fast.dwt(x), size), x) < 1e-6
    # the matrix-product form writes channels-last views
    assert convert(conv, 'eager-cpu').dwt(x).is_contiguous(
        memory_format=torch.channels_last)


def test_fused_checkpoint_loads_into_a_deploy_backbone():
    model = _trained_like('T2', local_kernel_sizes=((3, 5), 5, 3))
    fused = convert(model, 'fused')
    built = MobileMamba('T2', out_indices=(0, 1, 2, 3), deploy=True,
                        local_kernel_sizes=((3, 5), 5, 3)).eval()
    assert _types(built) == _types(convert(model, 'eager-cpu'))
    built.load_state_dict(fused.state_dict(), strict=True)
    assert not any(k.endswith('.bn.weight') for k in built.state_dict())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(built(x), model(x)):
            assert rel_err(a, b) < TOL
    # an unfused checkpoint into the fused model is reported, with advice
    with pytest.warns(UserWarning, match='build it with deploy=False'):
        built.load_state_dict_report(model.state_dict())


def test_conversion_is_idempotent_and_refuses_what_it_cannot_do():
    model = _trained_like('T2')
    twice = convert(convert(model, 'eager-cpu'), 'eager-cpu')
    x = torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        assert rel_err(twice(x)[-1], model(x)[-1]) < TOL
    with pytest.raises(ValueError, match="unknown deploy target 'tflite'"):
        convert(model, 'tflite')
    # a form of another target cannot be re-formed
    with pytest.raises(TypeError, match='is not a form of'):
        convert(convert(model, 'eager-cpu'), 'onnx')
    # a foreign model converts as a no-op
    plain = nn.Sequential(nn.Conv2d(3, 3, 1))
    assert _types(convert(plain, 'fused')) == _types(plain)


def test_unmerged_lora_adapters_are_named():
    from mmmobilemamba.models.ss2d import SS2D
    from mmmobilemamba.peft.lora_layers import add_lora
    m = SS2D(16).eval()
    add_lora(m, 'x_proj_weight', rank=2, alpha=2)
    with pytest.raises(ValueError, match='merge_lora'):
        convert(m, 'onnx')


@pytest.mark.parametrize('batch', [1, 8])
def test_classifier_converts_and_loads_into_the_deploy_config(batch):
    pytest.importorskip('mmpretrain')
    model = randomize_norms(build_classifier('t2')).eval()
    x = torch.rand(batch, 3, 64, 64)
    with torch.no_grad():
        ref = model(x, mode='tensor')
        for target in sorted(TARGETS):
            got = convert(model, target)(x, mode='tensor')
            assert rel_err(got, ref) < TOL, target
    built = build_classifier('t2', **{'backbone.deploy': True,
                                      'head.deploy': True}).eval()
    built.load_state_dict(convert(model, 'fused').state_dict(), strict=True)
    with torch.no_grad():
        assert rel_err(built(x, mode='tensor'), ref) < TOL


@pytest.mark.parametrize('scope,config', [
    ('mmdet', 'configs/retinanet_mobilemamba_b1.py'),
    ('mmseg', 'configs/sem-fpn/sem-fpn_mobilemamba-b4_160k_ade20k-512x512.py'),
])
def test_detector_and_segmentor_convert(scope, config):
    pytest.importorskip(scope)
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(osp.join(REPO, config))
    cfg.model.backbone.init_cfg = None
    # a context, so that no global default scope leaks into other tests
    with DefaultScope.overwrite_default_scope(scope):
        model = randomize_norms(MODELS.build(cfg.model)).eval()
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        ref = model.extract_feat(x)
        for target in sorted(TARGETS):
            got = convert(model, target).extract_feat(x)
            for a, b in zip(got, ref):
                assert rel_err(a, b) < TOL, target


#: Operators XNNPACK does not take, which the portable forms avoid.
_NOT_DELEGATED = ('layer_norm', 'softplus', 'split', 'chunk', 'select',
                  'sum', 'mm', 'addmm', 'addcmul', 'unsqueeze', 'expand',
                  'log1p', 'where', 'gt', 'zeros_like', 'full_like',
                  'convolution_backward', 'conv_transpose')


@pytest.mark.parametrize('size', [(12, 10), (2, 2)])
def test_xnnpack_graph_has_only_delegated_operators(size):
    """torch.export of an MRFFI (SS2D, wavelet, local branch, split) in the
    'xnnpack' form, weight-only operators folded as the ExecuTorch route
    does: none of the operators XNNPACK lacks is left."""
    pytest.importorskip('executorch')
    from mmmobilemamba.deploy.xnnpack import fold_constants
    from mmmobilemamba.models.mrffi import MRFFI
    torch.manual_seed(0)
    m = randomize_norms(MRFFI(32, 3, 0.5, 0.25)).eval()
    form = convert(m, 'xnnpack')
    x = torch.randn(1, 32, *size)
    with torch.no_grad():
        program = fold_constants(torch.export.export(form, (x, ),
                                                     strict=False))
        ref = m(x)
        got = program.module()(x)
    ops = {str(n.target).split('.')[1] for n in program.graph.nodes
           if n.op == 'call_function'}
    assert not ops & set(_NOT_DELEGATED), ops & set(_NOT_DELEGATED)
    assert rel_err(got, ref) < TOL
