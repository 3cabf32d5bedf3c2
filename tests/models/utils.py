"""Shared helpers of the model tests."""
import torch
import torch.nn as nn


@torch.no_grad()
def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random affine parameters and running statistics
    (and every zero-initialised scale a random value), so that no branch is
    a no-op and fusion/equivalence checks are meaningful."""
    gen = torch.Generator().manual_seed(seed)

    def rand(t, low, high):
        return torch.rand(t.shape, generator=gen) * (high - low) + low

    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.weight.copy_(rand(module.weight, 0.5, 1.5))
            module.bias.copy_(rand(module.bias, -0.2, 0.2))
            module.running_mean.copy_(rand(module.running_mean, -0.2, 0.2))
            module.running_var.copy_(rand(module.running_var, 0.5, 1.5))
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def build_classifier(arch: str = 't2', **overrides) -> nn.Module:
    """The classifier of configs/_base_/models/mobilemamba-{arch}.py.

    Built under the 'mmpretrain' scope explicitly, so that a default scope
    left behind by another test (e.g. 'mmdet') cannot redirect the build.

    Args:
        arch (str): Variant. Defaults to 't2'.
        **overrides: Dotted config keys merged into ``model``, e.g.
            ``{'backbone.deploy': True}``.
    """
    import os.path as osp

    import mmmobilemamba  # noqa: F401  (registration)
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    from ..helpers import REPO
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', '_base_', 'models',
                 f'mobilemamba-{arch.lower()}.py'))
    cfg.merge_from_dict({f'model.{k}': v for k, v in overrides.items()})
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg.model)
