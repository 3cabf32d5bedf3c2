"""Release-checkpoint conversion: all-or-nothing, on checkpoints written in
the release's layout (docs/architecture.md#checkpoint-layout)."""
import importlib.util
import os.path as osp

import pytest
import torch

from mmmobilemamba.checkpoint.release import (ConversionError, convert_release_checkpoint,
                                   convert_release_state_dict,
                                   extract_state_dict)
from mmmobilemamba.models import MobileMamba
from .helpers import REPO, build_classifier, release_state_dict

T2 = dict(embed_dims=(144, 272, 368), depths=(1, 2, 2))
B1 = dict(embed_dims=(200, 376, 448), depths=(2, 3, 2))


@pytest.fixture(scope='module')
def t2_release():
    return release_state_dict(**T2)


def _backbone_part(converted):
    return {k[len('backbone.'):]: v for k, v in converted.items()
            if k.startswith('backbone.')}


def test_release_key_counts_match_the_layout(t2_release):
    assert len(t2_release) == 547
    assert len(release_state_dict(**B1)) == 707


@pytest.mark.parametrize('arch,name', [(T2, 'T2'), (B1, 'B1')])
def test_every_key_converted_and_loaded_strictly(arch, name):
    src = release_state_dict(**arch)
    converted, meta = convert_release_state_dict(src)
    assert meta['arch_name'] == name and meta['num_classes'] == 10
    haar = sum(1 for k in src if k.endswith('_filter'))
    assert len(converted) == len(src) - haar
    backbone = MobileMamba(name)
    backbone.load_state_dict(_backbone_part(converted), strict=True)
    assert sorted(k for k in converted if k.startswith('head.')) == [
        'head.bn.bias', 'head.bn.num_batches_tracked',
        'head.bn.running_mean', 'head.bn.running_var', 'head.bn.weight',
        'head.fc.bias', 'head.fc.weight'
    ]


def test_values_land_where_the_release_layout_says(t2_release):
    converted, _ = convert_release_state_dict(t2_release)
    pairs = {
        'patch_embed.6.c.weight': 'backbone.stem.convs.3.conv.weight',
        'blocks1.0.dw0.m.bn.running_var':
        'backbone.stages.0.blocks.0.dw1.bn.running_var',
        'blocks1.0.ffn1.m.pw2.c.weight':
        'backbone.stages.0.blocks.0.ffn2.pw2.conv.weight',
        'blocks2.3.mixer.m.attn.global_op.global_atten.A_logs':
        'backbone.stages.1.blocks.0.mrffi.global_op.ss2d.A_logs',
        'blocks3.4.mixer.m.attn.global_op.global_atten.dt_projs_bias':
        'backbone.stages.2.blocks.1.mrffi.global_op.ss2d.dt_proj_bias',
        'blocks2.1.se.fc1.weight':
        'backbone.stages.1.downsample.merge.se.fc1.weight',
        'blocks3.1.conv3.bn.bias':
        'backbone.stages.2.downsample.merge.project.bn.bias',
        'blocks3.2.1.m.pw1.c.weight':
        'backbone.stages.2.downsample.post_ffn.pw1.conv.weight',
        'blocks1.0.mixer.m.attn.local_op.dwconv1x1.weight':
        'backbone.stages.0.blocks.0.mrffi.local_op.channel.conv.weight',
        'blocks1.0.mixer.m.attn.global_op.wavelet_scale.0.weight':
        'backbone.stages.0.blocks.0.mrffi.global_op.wavelet_scale',
        'head.l.weight': 'head.fc.weight',
    }
    for src, dst in pairs.items():
        assert torch.equal(converted[dst], t2_release[src]), src


def test_unused_source_keys_are_listed(t2_release):
    src = dict(t2_release)
    src['blocks1.0.extra.weight'] = torch.zeros(3)
    src['aux_head.weight'] = torch.zeros(3)
    with pytest.raises(ConversionError, match="2 source keys not used: "
                       "\\['aux_head.weight', 'blocks1.0.extra.weight'\\]"):
        convert_release_state_dict(src)


def test_unfilled_target_keys_are_listed(t2_release):
    src = dict(t2_release)
    del src['blocks2.1.se.fc2.bias']
    del src['blocks1.0.dw1.m.bn.running_mean']
    with pytest.raises(ConversionError) as err:
        convert_release_state_dict(src)
    assert ("2 target keys not filled: ['backbone.stages.0.blocks.0.dw2.bn."
            "running_mean', 'backbone.stages.1.downsample.merge.se.fc2.bias']"
            in str(err.value))


def test_shape_mismatch_and_wrong_filters_are_errors(t2_release):
    src = dict(t2_release)
    src['blocks1.0.mixer.m.attn.global_op.global_atten.Ds'] = torch.ones(3)
    key = 'blocks2.3.mixer.m.attn.global_op.iwt_filter'
    src[key] = src[key] * 2
    with pytest.raises(ConversionError) as err:
        convert_release_state_dict(src)
    msg = str(err.value)
    assert '1 shape mismatches' in msg and '(3,) != (448,)' in msg
    assert f'{key}: holds other filters than the Haar wavelet' in msg


def test_trainer_checkpoints_and_prefixes(t2_release):
    ema = {k: v + 1 if v.is_floating_point() else v
           for k, v in t2_release.items() if not k.endswith('_filter')}
    ema.update({k: v for k, v in t2_release.items() if k.endswith('_filter')})
    trainer = {'net': t2_release, 'net_E': ema, 'epoch': 299}
    key = 'head.l.bias'
    assert torch.equal(extract_state_dict(trainer)[key], t2_release[key])
    assert torch.equal(extract_state_dict(trainer, ema=True)[key], ema[key])
    assert extract_state_dict(trainer).keys() == t2_release.keys()
    with pytest.raises(ConversionError, match="no 'net_E' entry"):
        extract_state_dict({'net': t2_release}, ema=True)
    with pytest.raises(ConversionError, match="--ema needs a trainer"):
        extract_state_dict(t2_release, ema=True)
    wrapped = {f'module.{k}': v for k, v in t2_release.items()}
    assert set(extract_state_dict(wrapped)) == set(t2_release)
    with pytest.raises(ConversionError, match='not a released MobileMamba '
                       'checkpoint'):
        convert_release_state_dict({'conv.weight': torch.zeros(1)})


def _cli():
    path = osp.join(REPO, 'tools', 'model_converters',
                    'mobilemamba_to_mmpretrain.py')
    spec = importlib.util.spec_from_file_location('mm_to_mmpretrain', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_converts_ema_and_refuses_partial(t2_release, tmp_path, capsys):
    src = tmp_path / 'release.pth'
    torch.save({'net': t2_release, 'net_E': t2_release}, src)
    dst = tmp_path / 'converted.pth'
    assert _cli().main([str(src), str(dst), '--ema']) == 0
    assert 'MobileMamba T2' in capsys.readouterr().out
    saved = torch.load(dst)
    assert saved['meta']['ema'] is True and saved['meta']['arch_name'] == 'T2'
    MobileMamba('T2').load_state_dict(_backbone_part(saved['state_dict']))

    bad = dict(t2_release)
    del bad['head.l.bias']
    torch.save(bad, src)
    out = tmp_path / 'partial.pth'
    assert _cli().main([str(src), str(out)]) == 1
    assert "target keys not filled: ['head.fc.bias']" in \
        capsys.readouterr().err
    assert not out.exists()


def test_converted_checkpoint_loads_into_the_classifier(t2_release,
                                                        tmp_path):
    pytest.importorskip('mmpretrain')
    from mmengine.runner import load_checkpoint
    src, dst = tmp_path / 'release.pth', tmp_path / 'converted.pth'
    torch.save(t2_release, src)
    convert_release_checkpoint(str(src), str(dst))
    model = build_classifier('t2', **{'head.num_classes': 10})
    load_checkpoint(model, str(dst), strict=True)
    assert torch.equal(model.head.fc.weight, t2_release['head.l.weight'])
