"""WarmupEMA: its update rule against a plain reference, and why it exists
(a short run's average follows the recent weights, a long run's is the
plain EMA's)."""
import pytest
import torch
from torch import nn

from mmmobilemamba.engine import WarmupEMA


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def _reference(history, momentum, warmup):
    """The average of a sequence of weight dicts, written out plainly:
    update 0 copies; update n uses decay min(1 - m, (1 + n) / (w + n))."""
    avg = None
    for n, weights in enumerate(history):
        if n == 0:
            avg = {k: v.double().clone() for k, v in weights.items()}
            continue
        decay = min(1 - momentum, (1 + n) / (warmup + n))
        for k, v in weights.items():
            avg[k] = decay * avg[k] + (1 - decay) * v.double()
    return avg


@pytest.mark.parametrize('momentum,warmup', [(2e-4, 10), (0.05, 4)])
def test_update_rule_matches_reference(momentum, warmup):
    model = _model()
    ema = WarmupEMA(model, momentum=momentum, warmup=warmup)
    history = []
    for _ in range(60):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        history.append({k: v.detach().clone()
                        for k, v in model.named_parameters()})
        ema.update_parameters(model)
    expected = _reference(history, momentum, warmup)
    for k, v in ema.module.named_parameters():
        torch.testing.assert_close(v.double(), expected[k], rtol=1e-5,
                                   atol=1e-5)
    assert int(ema.steps) == 60


def test_decay_warms_up_then_is_the_configured_one():
    ema = WarmupEMA(_model(), momentum=2e-4, warmup=10)
    assert ema.momentum_at(1) == pytest.approx(1 - 2 / 11)
    assert ema.momentum_at(100) == pytest.approx(1 - 101 / 110)
    # (w - 1) / m - w = 44,990 updates: from there on, plain EMA
    assert ema.momentum_at(44_989) > 2e-4
    assert ema.momentum_at(44_990) == pytest.approx(2e-4)
    assert ema.momentum_at(10**6) == pytest.approx(2e-4)
    with pytest.raises(ValueError):
        WarmupEMA(_model(), warmup=1)


def test_buffers_and_interval_as_in_mmengine():
    model = _model()
    ema = WarmupEMA(model, momentum=0.1, interval=2, update_buffers=True)
    model.train()
    model(torch.randn(8, 4))  # BN statistics move
    ema.update_parameters(model)  # copy
    bn = ema.module[1]
    torch.testing.assert_close(bn.running_mean, model[1].running_mean)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    before = ema.module[0].weight.clone()
    ema.update_parameters(model)  # steps = 1: not on the interval
    torch.testing.assert_close(ema.module[0].weight, before)


def test_short_run_averages_recent_weights_not_the_initialisation():
    """540 updates of a weight that moves from 0 to 1 linearly: the plain
    EMA at momentum 2e-4 is still near the initial 0; the warm-up EMA lags
    the end by a tenth of the run (0.9)."""
    from mmengine.model import ExponentialMovingAverage
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    plain = ExponentialMovingAverage(model, momentum=2e-4)
    warm = WarmupEMA(model, momentum=2e-4)
    steps = 540
    for i in range(steps):
        with torch.no_grad():
            model.weight.fill_((i + 1) / steps)
        plain.update_parameters(model)
        warm.update_parameters(model)
    assert float(plain.module.weight) < 0.12
    assert float(warm.module.weight) > 0.85


def test_registered_for_ema_hook():
    from mmengine.registry import MODELS
    ema = MODELS.build(dict(type='WarmupEMA', model=_model(), momentum=0.01))
    assert isinstance(ema, WarmupEMA)
