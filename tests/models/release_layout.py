"""Writes a state_dict in the authors' release layout, from the key list of
docs/architecture.md#checkpoint-layout, independently of the converter."""
import math
from typing import Dict, Sequence

import torch

from mmmobilemamba.models import split_channels

# the four 2x2 Haar filters (LL, b1, b2, b3), entries +-0.5 (WTE-Mamba)
HAAR = 0.5 * torch.tensor([[[1., 1.], [1., 1.]], [[1., 1.], [-1., -1.]],
                           [[1., -1.], [1., -1.]], [[1., -1.], [-1., 1.]]])


def release_state_dict(embed_dims: Sequence[int],
                       depths: Sequence[int],
                       kernels: Sequence[int] = (7, 5, 3),
                       global_ratios: Sequence[float] = (0.8, 0.7, 0.6),
                       local_ratios: Sequence[float] = (0.2, 0.2, 0.3),
                       num_classes: int = 10,
                       seed: int = 0) -> Dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    sd: Dict[str, torch.Tensor] = {}

    def rand(*shape, low=-0.1, high=0.1):
        return torch.rand(shape, generator=gen) * (high - low) + low

    def bn(prefix, c):
        sd[f'{prefix}.weight'] = rand(c, low=0.5, high=1.5)
        sd[f'{prefix}.bias'] = rand(c)
        sd[f'{prefix}.running_mean'] = rand(c)
        sd[f'{prefix}.running_var'] = rand(c, low=0.5, high=1.5)
        sd[f'{prefix}.num_batches_tracked'] = torch.tensor(7)

    def conv_bn(prefix, cin, cout, k=1, groups=1):
        sd[f'{prefix}.c.weight'] = rand(cout, cin // groups, k, k)
        bn(f'{prefix}.bn', cout)

    def ffn(prefix, c):
        conv_bn(f'{prefix}.pw1', c, 2 * c)
        conv_bn(f'{prefix}.pw2', 2 * c, c)

    def block(prefix, c, k, gr, lr):
        conv_bn(f'{prefix}.dw0.m', c, c, 3, c)
        ffn(f'{prefix}.ffn0.m', c)
        cg, cl, _ = split_channels(c, gr, lr)
        att = f'{prefix}.mixer.m.attn'
        loc = f'{att}.local_op'
        sd[f'{loc}.dwconv3x3.weight'] = rand(cl, 1, k, k)
        bn(f'{loc}.bn1', cl)
        sd[f'{loc}.dwconv1x1.weight'] = rand(cl, 1, 1, 1)
        bn(f'{loc}.bn2', cl)
        glo = f'{att}.global_op'
        sd[f'{glo}.wt_filter'] = HAAR[:, None].repeat(cg, 1, 1, 1)
        sd[f'{glo}.iwt_filter'] = HAAR[:, None].repeat(cg, 1, 1, 1)
        di, r = 2 * cg, math.ceil(cg / 16)
        ga = f'{glo}.global_atten'
        sd[f'{ga}.x_proj_weight'] = rand(2, r + 2, di)
        sd[f'{ga}.Ds'] = rand(2 * di, low=0.5, high=1.5)
        sd[f'{ga}.A_logs'] = rand(2 * di, 1)
        sd[f'{ga}.dt_projs_weight'] = rand(2, di, r)
        sd[f'{ga}.dt_projs_bias'] = rand(2, di)
        sd[f'{ga}.out_norm.weight'] = rand(di, low=0.5, high=1.5)
        sd[f'{ga}.out_norm.bias'] = rand(di)
        conv_bn(f'{ga}.in_proj', cg, 2 * di)
        sd[f'{ga}.conv2d.weight'] = rand(di, 1, 3, 3)
        sd[f'{ga}.conv2d.bias'] = rand(di)
        conv_bn(f'{ga}.out_proj', di, cg)
        sd[f'{glo}.base_scale.weight'] = rand(1, cg, 1, 1, low=0.5, high=1.5)
        sd[f'{glo}.wavelet_convs.0.weight'] = rand(4 * cg, 1, k, k)
        sd[f'{glo}.wavelet_scale.0.weight'] = rand(1, 4 * cg, 1, 1)
        conv_bn(f'{att}.proj.1', c, c)
        conv_bn(f'{prefix}.dw1.m', c, c, 3, c)
        ffn(f'{prefix}.ffn1.m', c)

    c0 = embed_dims[0]
    widths = [3, c0 // 8, c0 // 4, c0 // 2, c0]
    for i in range(4):
        conv_bn(f'patch_embed.{2 * i}', widths[i], widths[i + 1], 3)
    for i in range(depths[0]):
        block(f'blocks1.{i}', c0, kernels[0], global_ratios[0],
              local_ratios[0])
    for s in (1, 2):
        cin, cout, name = embed_dims[s - 1], embed_dims[s], f'blocks{s + 1}'
        conv_bn(f'{name}.0.0.m', cin, cin, 3, cin)
        ffn(f'{name}.0.1.m', cin)
        conv_bn(f'{name}.1.conv1', cin, 4 * cin)
        conv_bn(f'{name}.1.conv2', 4 * cin, 4 * cin, 3, 4 * cin)
        sd[f'{name}.1.se.fc1.weight'] = rand(cin, 4 * cin, 1, 1)
        sd[f'{name}.1.se.fc1.bias'] = rand(cin)
        sd[f'{name}.1.se.fc2.weight'] = rand(4 * cin, cin, 1, 1)
        sd[f'{name}.1.se.fc2.bias'] = rand(4 * cin)
        conv_bn(f'{name}.1.conv3', 4 * cin, cout)
        conv_bn(f'{name}.2.0.m', cout, cout, 3, cout)
        ffn(f'{name}.2.1.m', cout)
        for i in range(depths[s]):
            block(f'{name}.{3 + i}', cout, kernels[s], global_ratios[s],
                  local_ratios[s])
    bn('head.bn', embed_dims[2])
    sd['head.l.weight'] = rand(num_classes, embed_dims[2])
    sd['head.l.bias'] = rand(num_classes)
    return sd
