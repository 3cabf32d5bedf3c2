"""Trained-looking normalisation layers for models with random weights.

A freshly built model has BatchNorms with weight 1 (or 0 where a branch is
zero-initialised), bias 0, mean 0 and variance 1: fusing them changes
nothing and zero-initialised branches do nothing, so neither a fusion check
nor a timing of the fused model would mean much. Benchmarks and tests give
them random values instead.
"""
import torch
import torch.nn as nn


@torch.no_grad()
def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random affine parameters and running statistics
    (weight and variance in [0.5, 1.5), bias and mean in [-0.2, 0.2)).

    Args:
        model (nn.Module): Changed in place.
        seed (int): Seed of the values. Defaults to 0.

    Returns:
        nn.Module: ``model``.
    """
    gen = torch.Generator().manual_seed(seed)

    def rand(t, low, high):
        return torch.rand(t.shape, generator=gen) * (high - low) + low

    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if module.weight is not None:
                module.weight.copy_(rand(module.weight, 0.5, 1.5))
                module.bias.copy_(rand(module.bias, -0.2, 0.2))
            if module.running_var is not None:
                module.running_mean.copy_(rand(module.running_mean, -0.2,
                                               0.2))
                module.running_var.copy_(rand(module.running_var, 0.5, 1.5))
    return model
