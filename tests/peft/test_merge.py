"""merge_lora: the plain model back, identical outputs, the base model's
keys and classes, in either order with BN fusion."""
import copy

import pytest
import torch
from torch.nn.utils import parametrize

from mmmobilemamba.deploy import convert
from mmmobilemamba.peft import MobileMambaLoRA, merge_lora

from ..helpers import rel_err
from ._common import TARGETS, perturb_adapters, tiny_classifier

pytest.importorskip('mmpretrain')

TOL = 1e-5


@pytest.fixture(scope='module')
def trained():
    """A LoRA model whose adapters hold non-zero updates, the base model,
    an input and the LoRA model's logits."""
    base = tiny_classifier()
    model = MobileMambaLoRA(copy.deepcopy(base), rank=4, targets=TARGETS,
                            trainable=['head']).eval()
    perturb_adapters(model)
    x = torch.rand(2, 3, 45, 38)
    out = model(x, mode='tensor')
    assert rel_err(out, base(x, mode='tensor')) > 1e-3  # adapters matter
    return model, base, x, out


def _plain(model):
    return not any(parametrize.is_parametrized(m) for m in model.modules())


def test_merge_gives_the_plain_model_with_the_same_outputs(trained):
    model, base, x, out = trained
    merged = merge_lora(copy.deepcopy(model))
    assert type(merged) is type(base) and _plain(merged)
    assert [type(m) for m in merged.modules()] == \
        [type(m) for m in base.modules()]
    state, base_state = merged.state_dict(), base.state_dict()
    assert list(state) == list(base_state)
    assert all(state[k].shape == base_state[k].shape for k in state)
    assert rel_err(merged(x, mode='tensor'), out) <= TOL
    assert all(p.requires_grad for p in merged.parameters())
    # and it loads strictly into a freshly built plain model
    fresh = tiny_classifier(seed=5)
    fresh.load_state_dict(state, strict=True)
    assert rel_err(fresh(x, mode='tensor'), out) <= TOL


def test_merge_then_fuse(trained):
    model, _, x, out = trained
    merged = convert(merge_lora(copy.deepcopy(model)), 'fused')
    assert rel_err(merged(x, mode='tensor'), out) <= TOL


def test_fuse_then_merge(trained):
    # Conv-BN fusion folds the adapted weight (the adapter is a
    # parametrization of conv.weight); SS2D's adapters are merged after
    model, _, x, out = trained
    fused = convert(model, 'fused')
    assert rel_err(fused(x, mode='tensor'), out) <= TOL
    merged = merge_lora(fused)
    assert _plain(merged)
    assert rel_err(merged(x, mode='tensor'), out) <= TOL


def test_adapters_on_an_already_fused_model():
    base = convert(tiny_classifier(), 'eager-cpu')
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():  # inference first: deploy forms may cache weights
        ref = base(x, mode='tensor')
    keys = list(base.state_dict())
    model = MobileMambaLoRA(base, rank=2, targets=TARGETS,
                            trainable=['head']).eval()
    with torch.no_grad():
        # equal up to rounding: the base's 1x1s run on packed weights, the
        # adapted (computed) weights through addmm (ops/packed_linear.py)
        assert rel_err(model(x, mode='tensor'), ref) <= 1e-6
    perturb_adapters(model)
    out = model(x, mode='tensor')  # autograd on: the plain products
    with torch.no_grad():  # and the inference path sees the adapters too
        assert rel_err(model(x, mode='tensor'), out) <= TOL
    merged = merge_lora(model)
    assert list(merged.state_dict()) == keys
    assert rel_err(merged(x, mode='tensor'), out) <= TOL
    with torch.no_grad():
        assert rel_err(merged(x, mode='tensor'), out) <= TOL


def test_merging_a_copy_leaves_the_original_working(trained):
    # torch's remove_parametrizations would delete the property from the
    # class a deep copy shares with its original
    model, _, x, out = trained
    merge_lora(copy.deepcopy(model))
    assert torch.equal(model(x, mode='tensor'), out)


def test_nothing_to_merge():
    with pytest.raises(ValueError, match='no LoRA adapter'):
        merge_lora(tiny_classifier())
