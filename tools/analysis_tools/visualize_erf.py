"""Plot effective receptive fields of one or more backbones side by side.

    python tools/analysis_tools/visualize_erf.py CONFIG [CKPT] \
        [--compare CONFIG2 [CKPT2]] --images DIR --out erf.png [--size 224] \
        [--trust-checkpoint]

Any config whose ``model.backbone`` is registered works (MobileMamba or a CNN
peer from mmpretrain), so the two can be compared in one figure. Without a
checkpoint the randomly initialised model is shown (say so when you publish
the figure). Checkpoints load without unpickling arbitrary objects
(``--trust-checkpoint`` lifts that for files you trust).
"""
import argparse
import glob
import os.path as osp

import numpy as np
import torch
from PIL import Image

import mmmobilemamba  # noqa: F401  (registration)
from mmmobilemamba.checkpoint import add_trust_argument, trust_checkpoints
from mmmobilemamba.analysis.erf import (effective_receptive_field,
                                     high_contribution_area, log_scaled)

MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)


def load_backbone(config: str, checkpoint: str = None):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint
    cfg = Config.fromfile(config)
    scope = cfg.get('default_scope', 'mmpretrain')
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return model.backbone


def read_images(folder: str, size: int, limit: int):
    paths = sorted(p for ext in ('jpg', 'jpeg', 'png', 'JPEG', 'JPG')
                   for p in glob.glob(osp.join(folder, '**', f'*.{ext}'),
                                      recursive=True))[:limit]
    if not paths:
        raise FileNotFoundError(f'no .jpg/.jpeg/.png images under {folder}')
    for path in paths:
        img = Image.open(path).convert('RGB').resize((size, size),
                                                     Image.BICUBIC)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32))
        yield (x.permute(2, 0, 1)[None] - MEAN) / STD


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--compare', nargs='+', action='append', default=[],
                        metavar=('CONFIG', 'CKPT'),
                        help='another backbone to plot beside the first')
    parser.add_argument('--images', required=True, help='folder of images')
    parser.add_argument('--out', required=True, help='output PNG')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--num-images', type=int, default=20)
    add_trust_argument(parser)
    args = parser.parse_args(argv)

    models = [(args.config, args.checkpoint)]
    for extra in args.compare:
        if len(extra) > 2:
            parser.error('--compare takes CONFIG [CKPT]')
        models.append((extra[0], extra[1] if len(extra) > 1 else None))

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 4.3),
                             squeeze=False)
    for ax, (config, ckpt) in zip(axes[0], models):
        with trust_checkpoints(args.trust_checkpoint):
            backbone = load_backbone(config, ckpt)
        erf = effective_receptive_field(
            backbone, read_images(args.images, args.size, args.num_images))
        area = high_contribution_area(erf)
        name = osp.splitext(osp.basename(config))[0]
        ax.imshow(log_scaled(erf), cmap='RdYlGn')
        ax.set_title(f'{name}\n{"trained" if ckpt else "random init"}, '
                     f'90% area {100 * area:.1f}%', fontsize=9)
        ax.axis('off')
        print(f'{name}: 90% of the gradient within {100 * area:.2f}% of the '
              'input pixels')
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
