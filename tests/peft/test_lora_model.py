"""MobileMambaLoRA: a no-op at initialisation, targets by pattern, exactly
the chosen parameters train, frozen BatchNorms stay frozen, and clear
errors for bad configs."""
import copy

import pytest
import torch
import torch.nn as nn

from mmmobilemamba.peft import MobileMambaLoRA

from ._common import TARGETS, tiny_classifier

pytest.importorskip('mmpretrain')


def lora(base=None, **kwargs):
    kwargs.setdefault('targets', TARGETS)
    kwargs.setdefault('rank', 4)
    kwargs.setdefault('trainable', ['head'])
    return MobileMambaLoRA(copy.deepcopy(base or tiny_classifier()),
                           **kwargs)


def test_noop_at_initialisation():
    base = tiny_classifier()
    model = lora(base).eval()
    x = torch.rand(3, 3, 40, 36)
    assert torch.equal(model(x, mode='tensor'), base(x, mode='tensor'))
    # every dense 1x1 Conv-BN of the backbone and both SS2D projections
    names = model.adapted
    assert any(n.endswith('ffn1.pw1.conv.weight') for n in names)
    assert any(n.endswith('merge.expand.conv.weight') for n in names)
    assert any(n.endswith('ss2d.in_proj.conv.weight') for n in names)
    assert sum(n.endswith('ss2d.x_proj_weight') for n in names) == 3
    assert sum(n.endswith('ss2d.dt_proj_weight') for n in names) == 3
    assert not any('dw' in n.split('.')[-3] for n in names)


def _grads(model, x):
    model.train()
    model.zero_grad()
    model(x, mode='tensor').square().mean().backward()
    return {n for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize('options, extra', [
    (dict(), ()),
    (dict(train_norms=True), ('.bn.weight', '.bn.bias', 'out_norm.weight',
                              'out_norm.bias')),
    (dict(train_scan_params=True), ('A_logs', 'Ds', 'dt_proj_bias')),
])
def test_only_chosen_parameters_get_gradients(options, extra):
    model = lora(**options)
    got = _grads(model, torch.rand(2, 3, 32, 32))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert got == trainable
    for name in got:
        assert ('.lora_' in name or name.startswith('model.head.')
                or any(name.endswith(e) for e in extra)), name
    for suffix in extra:  # each option adds what it names
        assert any(n.endswith(suffix) and 'backbone' in n for n in got)
    assert any('lora_A' in n for n in got) and any('lora_B' in n for n in got)
    assert 'model.head.fc.weight' in got
    frozen = [n for n in model.state_dict(keep_vars=True)]
    assert frozen  # the state dict exists (content checked elsewhere)


def test_frozen_batchnorms_stay_in_eval_mode():
    model = lora().train()
    bns = {n: m for n, m in model.model.named_modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    assert all(not m.training for n, m in bns.items()
               if n.startswith('backbone.'))
    assert bns['head.bn'].training  # the head trains
    stats = {n: m.running_mean.clone() for n, m in bns.items()}
    model(torch.rand(4, 3, 32, 32), mode='tensor')
    for name, module in bns.items():
        same = torch.equal(stats[name], module.running_mean)
        assert same == name.startswith('backbone.'), name
    # train_norms: the backbone's BNs train and update their statistics
    model = lora(train_norms=True).train()
    assert all(m.training for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm))


def test_first_target_decides_a_tensors_rank():
    model = lora(targets=[dict(type=r'.*stages\.0\..*pw1', rank=1, alpha=2),
                          dict(type=r'backbone\..*\.pw1')], rank=3)
    ranks = {n: m.rank for n, m in model.named_modules()
             if type(m).__name__ == 'LoRAUpdate'}
    stage0 = [r for n, r in ranks.items() if '.stages.0.' in n]
    later = [r for n, r in ranks.items() if '.stages.0.' not in n]
    assert stage0 and set(stage0) == {1}
    assert later and set(later) == {3}


def test_a_single_ss2d_projection_can_be_targeted():
    model = lora(targets=[dict(type=r'.*ss2d\.dt_proj_weight', rank=1)])
    assert model.adapted and all(
        n.endswith('dt_proj_weight') for n in model.adapted)


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(targets=[dict(type='no_such_layer')]), ValueError,
     "'no_such_layer' matches no module"),
    (dict(targets=[dict(type=r'backbone\..*\.dw1')]), TypeError,
     'depthwise'),
    (dict(targets=[dict(type=r'backbone\.stages\.0')]), TypeError,
     'MobileMambaStage, which takes no adapter'),
    (dict(targets=[dict(type='pw1', ranks=2)]), KeyError, 'unknown'),
    (dict(targets=[dict(type='pw1(')]), ValueError,
     'not a valid regular expression'),
    (dict(targets=[]), ValueError, 'at least one target'),
    (dict(rank=0), ValueError, 'rank must be an int >= 1'),
    (dict(targets=[dict(type='pw1', rank=-1)]), ValueError, 'rank'),
    (dict(targets=[dict(type='ss2d', rank=8)]), ValueError,
     'exceeds min\\(out, in\\)'),
    (dict(drop_rate=0.1), ValueError, 'drop_rate'),
    (dict(trainable=['nothing_here']), ValueError,
     "'nothing_here' matches no module or parameter"),
    (dict(targets=[dict(type=r'head\.fc')], trainable=['head']), ValueError,
     'both LoRA-adapted and trained in full'),
])
def test_bad_configs_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        lora(**kwargs)


def test_state_dict_holds_only_what_trains_under_base_keys():
    base = tiny_classifier()
    model = lora(base)
    state = model.state_dict()
    base_keys = set(base.state_dict())
    for key in state:
        if key == 'lora_base_fingerprint':
            continue
        if '.lora_' in key:
            owner = key.split('.parametrizations.')[0]
            tensor = key.split('.parametrizations.')[1].split('.')[0]
            assert f'{owner}.{tensor}' in base_keys, key
        else:
            assert key.startswith('head.') and key in base_keys, key
    # the head's BN statistics are trained state, the backbone's are not
    assert 'head.bn.running_mean' in state
    assert not any(k.startswith('backbone.') and 'running' in k
                   for k in state)
    assert 'lora_base_fingerprint' in state


def test_builds_from_a_config_through_the_registry():
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    import mmmobilemamba  # noqa: F401
    cfg = dict(
        type='MobileMambaLoRA',
        module=dict(
            type='ImageClassifier',
            backbone=dict(type='MobileMamba', arch=dict(
                embed_dims=(32, 48, 80), depths=(1, 1, 1))),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='BNLinearClsHead', num_classes=3,
                      in_channels=80)),
        targets=[dict(type='pw2')], trainable=['head'],
        # what the Runner adds: the config's top-level data_preprocessor
        data_preprocessor=dict(num_classes=3, mean=[1., 2., 3.],
                               std=[4., 5., 6.]))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg)
    assert isinstance(model, MobileMambaLoRA)
    assert all(n.endswith('pw2.conv.weight') for n in model.adapted)
    # the wrapped model's attributes and steps are the wrapper's
    assert model.backbone is model.model.backbone
    assert callable(model.train_step)
    assert model.data_preprocessor.mean.flatten().tolist() == [1., 2., 3.]


def test_ema_averages_what_trains():
    # mmengine's EMA (EMAHook) deep-copies the model and averages its
    # state dict: here the trained tensors, under the same keys
    from mmengine.model import ExponentialMovingAverage
    model = lora()
    ema = ExponentialMovingAverage(model, momentum=0.5, update_buffers=True)
    key = next(k for k in model.state_dict() if k.endswith('lora_B'))
    before = ema.module.state_dict()[key].clone()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith('lora_B'):
                param.fill_(1.)
    ema.update_parameters(model)  # the first update copies
    ema.update_parameters(model)
    after = ema.module.state_dict()[key]
    assert torch.equal(before, torch.zeros_like(before))
    assert torch.allclose(after, torch.ones_like(after))
    x = torch.rand(1, 3, 32, 32)
    model.eval(), ema.module.eval()
    assert torch.allclose(ema.module(x, mode='tensor'), model(x, mode='tensor'))
    state = ema.state_dict()
    assert f'module.{key}' in state and 'module.backbone.stem' not in str(
        [k for k in state if 'running' in k])
