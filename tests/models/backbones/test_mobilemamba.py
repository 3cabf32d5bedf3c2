"""MobileMamba backbone: variants, shapes, out_indices, frozen_stages,
norm_eval, batch independence, gradients, checkpointing, loading, errors."""
import copy

import pytest
import torch
import torch.nn as nn

from mmmobilemamba.models import MobileMamba
from ...helpers import randomize_norms, rel_err

VARIANTS = ['T2', 'T4', 'S6', 'B1', 'B2', 'B4']
# embed dims per variant (docs/architecture.md#variants)
DIMS = {
    'T2': (144, 272, 368),
    'T4': (176, 368, 448),
    'S6': (192, 384, 448),
    'B1': (200, 376, 448),
    'B2': (200, 376, 448),
    'B4': (200, 376, 448),
}
DEPTHS = {'T2': (1, 2, 2), 'T4': (1, 2, 2), 'S6': (1, 2, 2)}
DEPTHS.update({k: (2, 3, 2) for k in ('B1', 'B2', 'B4')})


def ceil_div(n, d):
    return -(-n // d)


@pytest.mark.parametrize('arch', VARIANTS)
def test_every_variant_at_every_resolution(arch):
    model = MobileMamba(arch, out_indices=(0, 1, 2, 3)).eval()
    c0, c1, c2 = DIMS[arch]
    assert [len(s.blocks) for s in model.stages] == list(DEPTHS[arch])
    assert model.out_channels == (c0, c0, c1, c2)
    # the variants' training sizes plus odd and non-square ones
    for h, w in [(192, 192), (224, 224), (256, 256), (177, 203), (33, 65)]:
        with torch.no_grad():
            outs = model(torch.rand(1, 3, h, w))
        assert [o.shape for o in outs] == [
            (1, c0, ceil_div(h, 16), ceil_div(w, 16)),
            (1, c0, ceil_div(h, 16), ceil_div(w, 16)),
            (1, c1, ceil_div(h, 32), ceil_div(w, 32)),
            (1, c2, ceil_div(h, 64), ceil_div(w, 64)),
        ], (h, w)
        assert all(torch.isfinite(o).all() for o in outs)


def test_arch_names_are_case_insensitive_and_dicts_work():
    assert MobileMamba('b1').embed_dims == MobileMamba('B1').embed_dims
    custom = MobileMamba(
        dict(embed_dims=(64, 96, 128), depths=(1, 1, 0),
             kernel_sizes=(5, 3, 3)), out_indices=(1, 2, 3)).eval()
    outs = custom(torch.rand(2, 3, 64, 96))
    assert [o.shape[1] for o in outs] == [64, 96, 128]
    assert len(custom.stages[2].blocks) == 0


def test_drop_path_rates_come_from_the_arch_unless_given():
    def rates(model):
        return [b.drop_path.drop_prob for s in model.stages for b in s.blocks]

    b1 = rates(MobileMamba('B1'))
    assert len(b1) == 7 and b1[0] == 0 and b1[-1] == pytest.approx(0.03)
    assert all(b > a for a, b in zip(b1, b1[1:]))
    assert set(rates(MobileMamba('T2'))) == {0.}
    assert rates(MobileMamba('T2', drop_path_rate=0.1))[-1] == \
        pytest.approx(0.1)


def test_out_indices_negative_and_int():
    model = MobileMamba('T2', out_indices=(-1, -3)).eval()
    assert model.out_indices == (1, 3)
    outs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [144, 368]
    assert MobileMamba('T2', out_indices=2).out_indices == (2, )


@pytest.mark.parametrize('bad,match', [
    ((4, ), 'entry 4 is out of range'),
    ((-5, ), 'entry -5 is out of range'),
    ((1, -3), 'name a feature twice'),
    ((), 'non-empty'),
    (('1', ), "entry '1'"),
])
def test_bad_out_indices_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        MobileMamba('T2', out_indices=bad)


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(arch='T3'), KeyError, "unknown MobileMamba arch 'T3'"),
    (dict(arch=dict(embed_dims=(8, 16, 32))), KeyError, "'depths'"),
    (dict(arch=dict(embed_dims=(8, 16, 32), depths=(1, 1, 1), width=2)),
     KeyError, "unknown keys \\['width'\\]"),
    (dict(arch=dict(embed_dims=(8, 16), depths=(1, 1))), ValueError,
     'embed_dims needs 3 values'),
    (dict(arch=5), TypeError, 'arch must be a str or a dict, got int'),
    (dict(frozen_stages=4), ValueError, 'got 4'),
    (dict(frozen_stages=-2), ValueError, 'got -2'),
    (dict(drop_path_rate=1.0), ValueError, 'got 1.0'),
    (dict(in_channels=0), ValueError, 'got 0'),
    (dict(local_kernel_sizes=(3, 3)), ValueError, 'got \\(3, 3\\)'),
])
def test_bad_arguments_raise(kwargs, error, match):
    kwargs.setdefault('arch', 'T2')
    with pytest.raises(error, match=match):
        MobileMamba(**kwargs)


@pytest.mark.parametrize('shape,match', [
    ((1, 1, 64, 64), 'expects \\(B, 3, H, W\\) images, got shape'),
    ((1, 3, 31, 64), 'at least 32x32, got 31x64'),
    ((3, 64, 64), 'got shape \\(3, 64, 64\\)'),
])
def test_bad_inputs_raise(shape, match):
    with pytest.raises(ValueError, match=match):
        MobileMamba('T2')(torch.rand(*shape))


def _bn_state(module):
    return {
        k: v.clone()
        for k, v in module.state_dict().items()
        if 'running_' in k or 'num_batches' in k
    }


@pytest.mark.parametrize('frozen', [-1, 0, 1, 2, 3])
def test_frozen_stages_freeze_parameters_and_statistics(frozen):
    model = MobileMamba('T2', frozen_stages=frozen, out_indices=(3, ))
    model.train()
    parts = [model.stem] + list(model.stages)
    before = [_bn_state(p) for p in parts]
    out = model(torch.rand(2, 3, 64, 64))[0]
    if frozen == 3:  # everything frozen: nothing to differentiate
        assert not out.requires_grad
    else:
        out.sum().backward()
    for i, part in enumerate(parts):
        is_frozen = i <= frozen
        assert all(p.requires_grad != is_frozen for p in part.parameters())
        assert all(m.training != is_frozen for m in part.modules())
        after = _bn_state(part)
        same = all(torch.equal(before[i][k], after[k]) for k in after)
        assert same == is_frozen, f'part {i}, frozen_stages={frozen}'
        if is_frozen:
            assert all(p.grad is None for p in part.parameters())


def test_norm_eval_keeps_statistics():
    model = MobileMamba('T2', norm_eval=True).train()
    assert all(not m.training for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm))
    assert model.stages[0].blocks[0].drop_path.training  # others still train
    before = _bn_state(model)
    model(torch.rand(2, 3, 64, 64))
    after = _bn_state(model)
    assert all(torch.equal(before[k], after[k]) for k in after)
    # and without norm_eval the statistics move
    plain = MobileMamba('T2').train()
    plain(torch.rand(2, 3, 64, 64))
    assert not torch.equal(plain.stem.convs[0].bn.running_mean,
                           before['stem.convs.0.bn.running_mean'])


def test_batch_independence():
    """Sample i's output does not depend on the other samples."""
    torch.manual_seed(0)
    model = randomize_norms(MobileMamba('T2', out_indices=(1, 2, 3))).eval()
    x = torch.rand(4, 3, 80, 96)
    with torch.no_grad():
        joint = model(x)
        for i in range(4):
            alone = model(x[i:i + 1])
            for a, b in zip(alone, joint):
                assert rel_err(a, b[i:i + 1]) < 1e-5


def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    model = randomize_norms(MobileMamba('T2', out_indices=(0, 1, 2, 3)))
    with torch.no_grad():  # no zero-initialised branch may block gradients
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
    model.train()
    # stage 3 needs L > 1 positions, or A (which only decays h_0 = 0) gets
    # no gradient
    outs = model(torch.rand(2, 3, 128, 128))
    sum(o.square().mean() for o in outs).backward()
    missing = [
        n for n, p in model.named_parameters()
        if p.grad is None or not torch.any(p.grad != 0)
    ]
    assert not missing


def test_with_cp_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    model = randomize_norms(MobileMamba('T2', out_indices=(1, 2, 3)))
    cp = copy.deepcopy(model)
    for stage in cp.stages:
        stage.with_cp = True
    x = torch.rand(2, 3, 64, 64)
    grads = []
    for m in (model, cp):
        m.train()
        sum(o.sum() for o in m(x)).backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
    for name, grad in grads[0].items():
        if grad is not None:
            torch.testing.assert_close(grads[1][name], grad, rtol=1e-4,
                                       atol=1e-5)
    assert MobileMamba('T2', with_cp=True).stages[1].with_cp


def test_init_cfg_pretrained_with_prefix(tmp_path):
    source = randomize_norms(MobileMamba('T2'), seed=3)
    path = tmp_path / 'classifier.pth'
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(2, 368)
    torch.save({'state_dict': state, 'meta': {}}, path)
    model = MobileMamba('T2', init_cfg=dict(type='Pretrained',
                                            checkpoint=str(path),
                                            prefix='backbone.'))
    model.init_weights()
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_loading_reports_missing_and_unexpected_keys(tmp_path):
    state = MobileMamba('T2').state_dict()
    state.pop('stem.convs.0.conv.weight')
    state['stem.extra.weight'] = torch.zeros(1)
    path = tmp_path / 'partial.pth'
    torch.save(state, path)
    model = MobileMamba('T2')
    with pytest.warns(UserWarning, match='1 missing keys '
                      "\\['stem.convs.0.conv.weight'\\], 1 unexpected keys "
                      "\\['stem.extra.weight'\\]"):
        report = model.load_checkpoint(str(path))
    assert report.missing_keys == ['stem.convs.0.conv.weight']
    with pytest.raises(KeyError, match='missing keys'):
        model.load_checkpoint(str(path), strict=True)


def test_loading_nothing_is_an_error(tmp_path):
    path = tmp_path / 'release.pth'
    torch.save({'patch_embed.0.c.weight': torch.zeros(18, 3, 3, 3)}, path)
    model = MobileMamba('T2', init_cfg=dict(type='Pretrained',
                                            checkpoint=str(path)))
    with pytest.raises(KeyError, match='released MobileMamba layout: '
                       'convert it first'):
        model.init_weights()
    with pytest.raises(KeyError, match="no key of .* starts with prefix "
                       "'backbone.'"):
        model.load_checkpoint(str(path), prefix='backbone.')


def test_constructor_loads_nothing_and_init_cfg_none_keeps_init():
    a, b = MobileMamba('T2'), MobileMamba('T2')
    b.init_weights()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        if name.endswith('bn.weight'):
            assert torch.equal(p, q)  # zero-inits and ones untouched


@pytest.mark.parametrize('arch', VARIANTS)
def test_parameter_counts_match_the_release(arch):
    """The release counts (8.8 / 14.2 / 15.0 / 17.1 M) include the
    two frozen Haar filter tensors of each WTE-Mamba and the BN1d + Linear
    head (1000 classes); after BN fusion they are 8.809 / 14.141 / 15.000 /
    17.079 M. Our filters are buffers, not parameters, so they are added
    here to compare like with like."""
    release = {'T2': 8.8, 'T4': 14.2, 'S6': 15.0, 'B1': 17.1, 'B2': 17.1,
               'B4': 17.1}[arch] * 1e6
    fused_release = {'T2': 8.809, 'T4': 14.141, 'S6': 15.000, 'B1': 17.079,
                  'B2': 17.079, 'B4': 17.079}[arch] * 1e6
    model = MobileMamba(arch)
    c2 = model.embed_dims[-1]
    head = 2 * c2 + c2 * 1000 + 1000  # BatchNorm1d + Linear head
    haar = sum(b.numel() for n, b in model.named_buffers()
               if n.endswith(('wavelet.dec', 'wavelet.rec')))
    params = sum(p.numel() for p in model.parameters()) + head
    assert abs(params + haar - release) / release < 0.005
    assert abs(params - release) / release < 0.005  # trainable alone, too
    from mmmobilemamba.deploy import convert
    model = convert(model, 'fused')
    fused = sum(p.numel() for p in model.parameters()) + c2 * 1000 + 1000
    assert abs(fused + haar - fused_release) / fused_release < 0.0005
