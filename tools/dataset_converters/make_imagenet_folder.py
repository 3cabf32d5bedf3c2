"""Write a small classification dataset in mmpretrain's ImageNet layout.

    python tools/dataset_converters/make_imagenet_folder.py data/imagenet \
        [--source shapes|digits] [--train-per-class 40] [--val-per-class 10] \
        [--size 64] [--seed 0]

::

    ROOT/train/<class>/<class>_00000.JPEG     ROOT/meta/train.txt
    ROOT/val/<class>/<class>_00000.JPEG       ROOT/meta/val.txt

Each annotation line is ``<class>/<file> <label>`` (mmpretrain's ``ImageNet``
dataset needs them when there are fewer than 1000 class folders). Point a
classification config at it with
``--cfg-options train_dataloader.dataset.data_root=ROOT`` (and val, test).

Two image sources:

* ``shapes`` (default): ten procedural shape classes
  (:data:`SHAPE_CLASSES`) drawn with random colours, sizes, positions and
  rotations on noisy backgrounds, so that telling them apart needs shape,
  not colour.
* ``digits``: real scans. scikit-learn ships the UCI optical-recognition
  handwritten digits (1797 scans of 8x8 pixels, 16 grey levels, 174 to 183
  per digit, written by 43 people), so no download is needed. Each scan is
  drawn as dark ink on white paper and upscaled (bicubic) to ``--size``;
  classes :data:`DIGIT_CLASSES`. Train and val images are disjoint scans,
  and the val images of a seed do not depend on the train count.
"""
import argparse
import os
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence

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


DIGIT_CLASSES = tuple(f'digit_{i}' for i in range(10))

SOURCES = ('shapes', 'digits')


def load_digit_scans() -> Dict[int, np.ndarray]:
    """scikit-learn's 8x8 handwritten-digit scans, grouped by digit.

    Returns:
        dict: digit -> (n, 8, 8) float array of grey levels 0 (paper) to 16
        (ink), in the order scikit-learn stores them.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # an optional runtime requirement
        raise ImportError(
            "source='digits' needs scikit-learn (it ships the scans): "
            'pip install -c requirements/constraints.txt scikit-learn'
        ) from err
    digits = load_digits()
    return {d: digits.images[digits.target == d] for d in range(10)}


def digit_image(scan: np.ndarray, size: int) -> Image.Image:
    """One 8x8 scan as a ``size`` x ``size`` RGB image, dark ink on white."""
    grey = 255.0 - np.asarray(scan, dtype=np.float64) * (255.0 / 16.0)
    img = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8))
    return img.resize((size, size), Image.BICUBIC).convert('RGB')


def _digit_images(per_split: Dict[str, int], size: int,
                  rng: np.random.Generator) -> Dict[str, List[list]]:
    """split -> per-class lists of images, disjoint scans across splits."""
    scans = load_digit_scans()
    fewest = min(len(v) for v in scans.values())
    wanted = sum(per_split.values())
    if wanted > fewest:
        raise ValueError(
            f'the digit scans hold only {fewest} images of the rarest digit; '
            f'asked for {per_split} = {wanted} per class')
    out = {split: [] for split in per_split}
    for digit in range(10):
        order = rng.permutation(len(scans[digit]))
        # val first, so that the val set of a seed is the same whatever the
        # train count
        start = 0
        for split in sorted(per_split, key=lambda s: s != 'val'):
            picked = order[start:start + per_split[split]]
            start += per_split[split]
            out[split].append([digit_image(scans[digit][i], size)
                               for i in picked])
    return out


def _drawn_images(draw: Callable, classes: Sequence[str], per_class: int,
                  size: int, rng: np.random.Generator):
    """Per-class lazy iterables of drawn images (drawn when written)."""
    for name in classes:
        yield (draw(name, size, rng) for _ in range(per_class))


def make_imagenet_folder(root: str,
                         num_train_per_class: int = 40,
                         num_val_per_class: int = 10,
                         image_size: int = 64,
                         classes: Optional[Sequence[str]] = None,
                         seed: int = 0,
                         draw: Optional[Callable] = None,
                         source: str = 'shapes') -> Dict[str, int]:
    """Write the dataset under ``root``; returns the count per split.

    Args:
        root (str): Output folder (created; existing files are overwritten).
        num_train_per_class (int): Defaults to 40.
        num_val_per_class (int): Defaults to 10.
        image_size (int): Side of the square images. Defaults to 64.
        classes (Sequence[str], optional): Class names, label = index. None
            uses the source's (:data:`SHAPE_CLASSES` or
            :data:`DIGIT_CLASSES`); 'digits' accepts only ten names.
            Defaults to None.
        seed (int): Random seed; the same seed writes the same files.
            Defaults to 0.
        draw (Callable, optional): ``draw(name, size, rng) -> PIL.Image``
            for the 'shapes' source; defaults to :func:`draw_shape`.
        source (str): 'shapes' (procedural) or 'digits' (scikit-learn's
            real scans, at most 174 images per class in total).
            Defaults to 'shapes'.
    """
    if image_size < 16:
        raise ValueError(f'image_size must be >= 16, got {image_size}')
    if source not in SOURCES:
        raise ValueError(f'unknown source {source!r}; expected one of '
                         f'{SOURCES}')
    for what, n in (('num_train_per_class', num_train_per_class),
                    ('num_val_per_class', num_val_per_class)):
        if not isinstance(n, int) or n < 0:
            raise ValueError(f'{what} must be an int >= 0, got {n!r}')
    per_split = dict(train=num_train_per_class, val=num_val_per_class)
    rng = np.random.default_rng(seed)
    if source == 'digits':
        if draw is not None:
            raise ValueError("draw is only used by source='shapes'")
        classes = DIGIT_CLASSES if classes is None else tuple(classes)
        if len(classes) != len(DIGIT_CLASSES):
            raise ValueError(f"source='digits' has 10 classes, got "
                             f'{len(classes)} names: {classes}')
        images = _digit_images(per_split, image_size, rng)
    else:
        classes = SHAPE_CLASSES if classes is None else tuple(classes)
        draw = draw or draw_shape
        images = {
            split: _drawn_images(draw, classes, n, image_size, rng)
            for split, n in per_split.items()
        }
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    counts = {}
    for split in ('train', 'val'):
        lines = []
        # shapes are drawn lazily, split by split and class by class: that
        # order of draws is what a seed's files depend on
        for label, (name, imgs) in enumerate(zip(classes, images[split])):
            folder = osp.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i, img in enumerate(imgs):
                fname = f'{name}_{i:05d}.JPEG'
                img.save(osp.join(folder, fname), format='JPEG', quality=95)
                lines.append(f'{name}/{fname} {label}')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        counts[split] = len(lines)
    with open(osp.join(root, 'meta', 'classes.txt'), 'w') as f:
        f.write('\n'.join(classes) + '\n')
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='output folder')
    parser.add_argument('--source', choices=SOURCES, default='shapes',
                        help='procedural shapes or real digit scans')
    parser.add_argument('--train-per-class', type=int, default=40)
    parser.add_argument('--val-per-class', type=int, default=10)
    parser.add_argument('--size', type=int, default=64, help='image side')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    counts = make_imagenet_folder(args.root, args.train_per_class,
                                  args.val_per_class, args.size,
                                  seed=args.seed, source=args.source)
    print(f'wrote {counts["train"]} train and {counts["val"]} val images '
          f'({args.source}, 10 classes) to {args.root}')


if __name__ == '__main__':
    main()
