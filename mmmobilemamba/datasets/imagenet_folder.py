"""Write a small classification dataset in mmpretrain's ImageNet layout::

    ROOT/train/<class>/<class>_00000.JPEG     ROOT/meta/train.txt
    ROOT/val/<class>/<class>_00000.JPEG       ROOT/meta/val.txt

Each annotation line is ``<class>/<file> <label>``. mmpretrain's ``ImageNet``
dataset needs these files when there are fewer than 1000 class folders.

The images come from a documented procedural generator: ten shape classes
(:data:`SHAPE_CLASSES`) drawn with random colours, sizes, positions and
rotations on noisy backgrounds, so that telling them apart needs shape, not
colour.
"""
import os
import os.path as osp
from typing import Callable, Dict, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

SHAPE_CLASSES = ('circle', 'square', 'triangle', 'cross', 'ring',
                 'horizontal_stripes', 'vertical_stripes', 'checkerboard',
                 'diamond', 'dots')


def _colour(rng: np.random.Generator) -> tuple:
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def _contrasting(rng: np.random.Generator, other: tuple) -> tuple:
    while True:
        c = _colour(rng)
        if sum(abs(a - b) for a, b in zip(c, other)) > 200:
            return c


def _regular_polygon(cx, cy, r, n, angle):
    return [(cx + r * np.cos(angle + 2 * np.pi * i / n),
             cy + r * np.sin(angle + 2 * np.pi * i / n)) for i in range(n)]


def draw_shape(name: str, size: int, rng: np.random.Generator) -> Image.Image:
    """Draw one sample of class ``name`` as a ``size`` x ``size`` RGB image."""
    if name not in SHAPE_CLASSES:
        raise ValueError(f'unknown shape class {name!r}; '
                         f'expected one of {SHAPE_CLASSES}')
    bg = _colour(rng)
    fg = _contrasting(rng, bg)
    noise = rng.normal(0, 12, size=(size, size, 3))
    base = np.clip(np.array(bg, dtype=np.float32) + noise, 0, 255)
    img = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    r = size * rng.uniform(0.2, 0.38)
    cx, cy = rng.uniform(r, size - r, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    width = max(2, int(r * rng.uniform(0.25, 0.4)))
    box = [cx - r, cy - r, cx + r, cy + r]
    if name == 'circle':
        draw.ellipse(box, fill=fg)
    elif name == 'ring':
        draw.ellipse(box, outline=fg, width=width)
    elif name == 'square':
        draw.polygon(_regular_polygon(cx, cy, r, 4, angle), fill=fg)
    elif name == 'diamond':
        # a rhombus: one diagonal twice the other
        pts = [(cx + r * np.cos(angle), cy + r * np.sin(angle)),
               (cx - 0.5 * r * np.sin(angle), cy + 0.5 * r * np.cos(angle)),
               (cx - r * np.cos(angle), cy - r * np.sin(angle)),
               (cx + 0.5 * r * np.sin(angle), cy - 0.5 * r * np.cos(angle))]
        draw.polygon(pts, fill=fg)
    elif name == 'triangle':
        draw.polygon(_regular_polygon(cx, cy, r, 3, angle), fill=fg)
    elif name == 'cross':
        for a in (angle, angle + np.pi / 2):
            dx, dy = r * np.cos(a), r * np.sin(a)
            draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=fg,
                      width=width)
    elif name in ('horizontal_stripes', 'vertical_stripes'):
        period = int(rng.integers(max(4, size // 12), max(5, size // 5)))
        for p in range(0, size, period):
            if name == 'horizontal_stripes':
                draw.rectangle([0, p, size, p + period // 2 - 1], fill=fg)
            else:
                draw.rectangle([p, 0, p + period // 2 - 1, size], fill=fg)
    elif name == 'checkerboard':
        cell = int(rng.integers(max(3, size // 12), max(4, size // 5)))
        for i in range(0, size, cell):
            for j in range(0, size, cell):
                if (i // cell + j // cell) % 2 == 0:
                    draw.rectangle([i, j, i + cell - 1, j + cell - 1],
                                   fill=fg)
    elif name == 'dots':
        for _ in range(int(rng.integers(6, 14))):
            x, y = rng.uniform(0, size, size=2)
            d = size * rng.uniform(0.03, 0.06)
            draw.ellipse([x - d, y - d, x + d, y + d], fill=fg)
    return img


def make_imagenet_folder(root: str,
                         num_train_per_class: int = 40,
                         num_val_per_class: int = 10,
                         image_size: int = 64,
                         classes: Sequence[str] = SHAPE_CLASSES,
                         seed: int = 0,
                         draw: Optional[Callable] = None) -> Dict[str, int]:
    """Write the dataset under ``root``; returns the count per split.

    Args:
        root (str): Output folder (created; existing files are overwritten).
        num_train_per_class (int): Defaults to 40.
        num_val_per_class (int): Defaults to 10.
        image_size (int): Side of the square images. Defaults to 64.
        classes (Sequence[str]): Class names, label = index. Defaults to the
            ten procedural shape classes.
        seed (int): Random seed; the same seed writes the same files.
            Defaults to 0.
        draw (Callable, optional): ``draw(name, size, rng) -> PIL.Image``;
            defaults to :func:`draw_shape`.
    """
    if image_size < 16:
        raise ValueError(f'image_size must be >= 16, got {image_size}')
    draw = draw or draw_shape
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    counts = {}
    for split, per_class in (('train', num_train_per_class),
                             ('val', num_val_per_class)):
        lines = []
        for label, name in enumerate(classes):
            folder = osp.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                fname = f'{name}_{i:05d}.JPEG'
                draw(name, image_size, rng).save(
                    osp.join(folder, fname), format='JPEG', quality=95)
                lines.append(f'{name}/{fname} {label}')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        counts[split] = len(lines)
    with open(osp.join(root, 'meta', 'classes.txt'), 'w') as f:
        f.write('\n'.join(classes) + '\n')
    return counts
