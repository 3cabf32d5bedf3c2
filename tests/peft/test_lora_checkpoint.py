"""Adapter-only checkpoints: what they hold, loading them onto the base
weights (and only those), through the project's safe loader and mmengine's
loader."""
import copy

import pytest
import torch

from mmmobilemamba.peft import (MobileMambaLoRA, load_lora_checkpoint,
                                save_lora_checkpoint)

from ..helpers import rel_err
from ._common import TARGETS, perturb_adapters, tiny_classifier

pytest.importorskip('mmpretrain')


def build(base, **kwargs):
    return MobileMambaLoRA(copy.deepcopy(base), rank=4, targets=TARGETS,
                           trainable=['head'], **kwargs).eval()


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    base = tiny_classifier()
    model = build(base)
    perturb_adapters(model)
    with torch.no_grad():
        model.model.head.fc.weight.add_(0.1)
    path = str(tmp_path_factory.mktemp('lora') / 'lora.pth')
    save_lora_checkpoint(model, path, meta=dict(note='test'))
    x = torch.rand(2, 3, 32, 32)
    return base, model, path, x, model(x, mode='tensor')


def test_file_holds_only_the_trained_tensors(saved):
    base, model, path, _, _ = saved
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    state = ckpt['state_dict']
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    stored = sum(v.numel() for k, v in state.items()
                 if 'running' not in k and 'num_batches' not in k
                 and k != 'lora_base_fingerprint')
    assert stored == trained
    assert trained < 0.25 * sum(p.numel() for p in base.parameters())
    assert ckpt['meta']['note'] == 'test' and ckpt['meta']['lora']['rank'] == 4


def test_loads_onto_its_base(saved):
    base, _, path, x, out = saved
    fresh = build(base)
    report = load_lora_checkpoint(fresh, path)
    assert not report.missing_keys and not report.unexpected_keys
    assert rel_err(fresh(x, mode='tensor'), out) == 0


def test_loads_through_mmengine_like_a_runner_checkpoint(saved):
    # tools/test.py: the Runner loads with mmengine's load_checkpoint,
    # which the project routes to its safe loader
    from mmengine.runner import load_checkpoint
    base, _, path, x, out = saved
    fresh = build(base)
    load_checkpoint(fresh, path, map_location='cpu', strict=True)
    assert rel_err(fresh(x, mode='tensor'), out) == 0


def test_refuses_other_base_weights(saved):
    _, _, path, _, _ = saved
    other = build(tiny_classifier(seed=3))
    with pytest.raises(ValueError, match='other base weights'):
        load_lora_checkpoint(other, path)


def test_missing_trained_tensors_are_an_error(saved, tmp_path):
    base, _, path, _, _ = saved
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    key = next(k for k in ckpt['state_dict'] if k.endswith('lora_A'))
    del ckpt['state_dict'][key]
    broken = str(tmp_path / 'broken.pth')
    torch.save(ckpt, broken)
    with pytest.raises(KeyError, match='1 missing keys'):
        load_lora_checkpoint(build(base), broken)
    # an adapter of another rank does not fit either
    with pytest.raises((KeyError, RuntimeError), match='size mismatch|'
                       'missing'):
        model = MobileMambaLoRA(copy.deepcopy(base), rank=2, targets=TARGETS,
                                trainable=['head'])
        load_lora_checkpoint(model, path)


def test_wrong_model_type():
    with pytest.raises(TypeError, match='MobileMambaLoRA'):
        save_lora_checkpoint(tiny_classifier(), '/tmp/never.pth')
