"""Write a small semantic-segmentation dataset in ADE20K's folder layout.

    python tools/dataset_converters/make_ade20k.py data/ade/ADEChallengeData2016 \
        [--num-train 200] [--num-val 50] [--min-size 192] [--max-size 320]
        [--seed 0]

ROOT plays the part of ``ADEChallengeData2016/``::

    ROOT/images/training/ADE_train_00000001.jpg
    ROOT/annotations/training/ADE_train_00000001.png   (and validation/)

Label PNGs are single-channel uint8 with ADE20K's SceneParsing indexing:
value ``v`` in 1..150 is class ``v - 1`` of mmseg's ``ADE20KDataset`` list
and 0 means "not labelled" (``reduce_zero_label=True`` makes it 255, the
ignore index), so the stock ADE20K pipelines read it;
:func:`ade20k_cfg_options` gives the ``--cfg-options`` that point a config at
it (docs/segmentation.md).

The images are procedural outdoor scenes with ten ADE20K classes
(:data:`SCENE_CLASSES`): sky, optionally a mountain ridge and buildings on
the horizon, one or two ground materials (road, grass, earth, water), then
trees, cars and people standing on the ground. Every class has its own
colour range and texture, and objects vary in size and position, so a
segmentor must learn appearance and context. As in ADE20K's annotations, a
thin band along every region boundary is left unlabelled.
"""
import argparse
import os
import os.path as osp
from typing import Dict, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

#: (PNG value, ADE20K class name) of the classes the scenes contain. The
#: value is the class's 1-based position in ADE20K's 150-class list.
SCENE_CLASSES: Tuple[Tuple[int, str], ...] = (
    (2, 'building'), (3, 'sky'), (5, 'tree'), (7, 'road'), (10, 'grass'),
    (13, 'person'), (14, 'earth'), (17, 'mountain'), (21, 'car'),
    (22, 'water'))
_V = {name: value for value, name in SCENE_CLASSES}

#: PNG value of unlabelled pixels (ignored in training and evaluation).
IGNORE_VALUE = 0

SPLITS = (('training', 'ADE_train'), ('validation', 'ADE_val'))


def _noise(h: int, w: int, rng: np.random.Generator, scale: float,
           cell: int) -> np.ndarray:
    """Smooth noise in [-scale, scale]: random values on a coarse grid,
    bilinearly upsampled (cell = grid spacing in pixels)."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    small = rng.uniform(0, 255, (gh, gw)).astype(np.uint8)
    big = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    return (np.asarray(big, np.float32) / 127.5 - 1.0) * scale


def _jitter(rgb, rng: np.random.Generator, amount: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(
        -amount, amount, 3), 0, 255)


def _texture(name: str, h: int, w: int,
             rng: np.random.Generator) -> np.ndarray:
    """An (h, w, 3) float image of class ``name``'s appearance."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if name == 'sky':  # vertical gradient, deep blue above, pale below
        top = _jitter((60, 110, 200), rng, 30)
        bottom = _jitter((190, 215, 240), rng, 20)
        t = (yy / max(h - 1, 1))[..., None]
        img = top * (1 - t) + bottom * t
        clouds = np.clip(_noise(h, w, rng, 1.0, 24), 0, None)[..., None]
        img = img + clouds * 60
    elif name == 'mountain':  # dark, blotchy
        img = _jitter((105, 95, 100), rng, 25) + _noise(
            h, w, rng, 30, 10)[..., None]
    elif name == 'building':  # facade with a regular grid of windows
        img = np.broadcast_to(_jitter((170, 155, 135), rng, 45),
                              (h, w, 3)).copy()
        px, py = rng.integers(7, 13), rng.integers(8, 14)
        win = ((xx % px) < px * 0.5) & ((yy % py) < py * 0.55)
        img[win] = _jitter((60, 75, 95), rng, 20)
    elif name == 'road':  # dark asphalt, fine grain, dashed lane marks
        img = _jitter((75, 75, 78), rng, 15) + rng.normal(
            0, 9, (h, w))[..., None]
        lane = (np.abs(xx - rng.uniform(0.3, 0.7) * w) < 2) & (
            (yy // 10) % 2 == 0)
        img[lane] = (225, 225, 210)
    elif name == 'grass':  # green with vertical streaks
        streaks = np.repeat(rng.normal(0, 18, (1, w)), h, 0)
        img = _jitter((70, 140, 50), rng, 25) + (
            streaks + rng.normal(0, 8, (h, w)))[..., None]
    elif name == 'earth':  # sandy brown speckles
        img = _jitter((150, 115, 75), rng, 20) + (
            _noise(h, w, rng, 15, 6) + rng.normal(0, 14, (h, w)))[..., None]
    elif name == 'water':  # blue-teal horizontal ripples
        period = rng.uniform(4, 8)
        ripple = np.sin(yy * 2 * np.pi / period + _noise(h, w, rng, 2, 16))
        img = _jitter((40, 95, 140), rng, 20) + (ripple * 20)[..., None]
    elif name == 'tree':  # dark green leaf blotches
        img = _jitter((35, 95, 35), rng, 15) + _noise(
            h, w, rng, 35, 4)[..., None]
    elif name == 'car':  # one saturated body colour, glossy
        body = rng.permutation([rng.uniform(150, 240), rng.uniform(0, 60),
                                rng.uniform(0, 120)])
        img = body + (np.sin(yy / 3.0) * 12)[..., None]
    elif name == 'person':  # clothing colour with small folds
        img = _jitter((120, 60, 90), rng, 70) + _noise(
            h, w, rng, 20, 3)[..., None]
    else:
        raise ValueError(f'no texture for class {name!r}; expected one of '
                         f'{[n for _, n in SCENE_CLASSES]}')
    return img


class _Canvas:
    """An image and its label map, painted together layer by layer."""

    def __init__(self, w: int, h: int, rng: np.random.Generator):
        self.w, self.h, self.rng = w, h, rng
        self.img = np.zeros((h, w, 3), np.float32)
        self.label = np.zeros((h, w), np.uint8)

    def paint(self, name: str, draw_fn) -> None:
        """Paint class ``name`` where ``draw_fn(ImageDraw)`` draws (255)."""
        mask_img = Image.new('L', (self.w, self.h), 0)
        draw_fn(ImageDraw.Draw(mask_img))
        mask = np.asarray(mask_img) > 0
        self.img[mask] = _texture(name, self.h, self.w, self.rng)[mask]
        self.label[mask] = _V[name]


def draw_ade20k_scene(w: int, h: int, rng: np.random.Generator):
    """Draw one scene.

    Args:
        w (int): Width in pixels (>= 32).
        h (int): Height in pixels (>= 32).
        rng (np.random.Generator): Random source.

    Returns:
        tuple: (PIL RGB image, (h, w) uint8 label array with ADE20K values,
        0 = unlabelled).
    """
    if w < 32 or h < 32:
        raise ValueError(f'scene size must be at least 32x32, got {w}x{h}')
    c = _Canvas(w, h, rng)
    horizon = rng.uniform(0.3, 0.6) * h
    c.paint('sky', lambda d: d.rectangle([0, 0, w, h], fill=255))

    if rng.random() < 0.6:  # a ridge of peaks behind everything else
        xs = np.linspace(0, w, int(rng.integers(4, 9)))
        ys = horizon - rng.uniform(0.05, 0.25, len(xs)) * h
        ridge = [(0, horizon)] + list(zip(xs, ys)) + [(w, horizon)]
        c.paint('mountain', lambda d: d.polygon(ridge, fill=255))
    x = rng.uniform(-0.1, 0.3) * w
    while x < w and rng.random() < 0.8:  # buildings on the horizon
        bw = rng.uniform(0.12, 0.3) * w
        top = horizon - rng.uniform(0.15, 0.45) * h
        box = [x, max(top, 2), x + bw, horizon + 1]
        c.paint('building', lambda d, b=box: d.rectangle(b, fill=255))
        x += bw + rng.uniform(0.02, 0.25) * w

    # the ground: one material, or two split along a slanted line
    grounds = ('road', 'grass', 'earth', 'water')
    first = grounds[int(rng.integers(len(grounds)))]
    c.paint(first, lambda d: d.rectangle([0, horizon, w, h], fill=255))
    if rng.random() < 0.5:
        second = grounds[int(rng.integers(len(grounds)))]
        if second != first:
            x0, x1 = rng.uniform(0.2, 0.8, 2) * w
            side = [(x0, horizon), (w, horizon), (w, h), (x1, h)]
            c.paint(second, lambda d: d.polygon(side, fill=255))

    # objects standing on the ground, sorted far to near
    feet = sorted(rng.uniform(horizon + 0.05 * h, h, int(rng.integers(1, 6))))
    for fy in feet:
        s = (fy - horizon) / (h - horizon) * 0.6 + 0.4  # nearer = bigger
        fx = rng.uniform(0.05, 0.95) * w
        kind = ('tree', 'car', 'person')[int(rng.integers(3))]
        if kind == 'tree':
            r = s * rng.uniform(0.08, 0.16) * min(w, h)
            tw, th = r * 0.35, r * 1.2

            def tree(d, fx=fx, fy=fy, r=r, tw=tw, th=th):
                d.rectangle([fx - tw / 2, fy - th, fx + tw / 2, fy], fill=255)
                crown = [fx - r, fy - th - 1.6 * r, fx + r, fy - th + 0.3 * r]
                d.ellipse(crown, fill=255)

            c.paint('tree', tree)
        elif kind == 'car':
            cw = s * rng.uniform(0.18, 0.3) * w
            ch = cw * rng.uniform(0.35, 0.45)

            def car(d, fx=fx, fy=fy, cw=cw, ch=ch):
                d.rectangle([fx - cw / 2, fy - ch * 0.65, fx + cw / 2,
                             fy - ch * 0.15], fill=255)
                d.polygon([(fx - cw * 0.3, fy - ch * 0.65),
                           (fx - cw * 0.18, fy - ch),
                           (fx + cw * 0.2, fy - ch),
                           (fx + cw * 0.35, fy - ch * 0.65)], fill=255)
                for wx in (fx - cw * 0.3, fx + cw * 0.3):
                    rr = ch * 0.2
                    d.ellipse([wx - rr, fy - 2 * rr, wx + rr, fy], fill=255)

            c.paint('car', car)
        else:
            ph = s * rng.uniform(0.2, 0.35) * h
            pw = ph * 0.28

            def person(d, fx=fx, fy=fy, ph=ph, pw=pw):
                hr = ph * 0.1
                d.ellipse([fx - hr, fy - ph, fx + hr, fy - ph + 2 * hr],
                          fill=255)
                d.rectangle([fx - pw / 2, fy - ph + 2 * hr, fx + pw / 2,
                             fy - ph * 0.45], fill=255)
                d.rectangle([fx - pw / 2, fy - ph * 0.45, fx - pw * 0.08, fy],
                            fill=255)
                d.rectangle([fx + pw * 0.08, fy - ph * 0.45, fx + pw / 2, fy],
                            fill=255)

            c.paint('person', person)

    # sensor noise on the whole image; labels unaffected
    img = np.clip(c.img + rng.normal(0, 4, c.img.shape), 0, 255)
    label = c.label.copy()
    # leave the pixels on each side of a region boundary unlabelled, as
    # ADE20K's annotators do along object outlines
    lab = c.label
    edge = np.zeros_like(lab, bool)
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[:, :-1] |= lab[:, 1:] != lab[:, :-1]
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    edge[:-1, :] |= lab[1:, :] != lab[:-1, :]
    label[edge] = IGNORE_VALUE
    return Image.fromarray(img.astype(np.uint8)), label


def make_ade20k(root: str,
                num_train: int = 200,
                num_val: int = 50,
                size_range: Tuple[int, int] = (192, 320),
                seed: int = 0) -> Dict[str, int]:
    """Write an ADE20K-format dataset under ``root``.

    Args:
        root (str): Output folder, the counterpart of
            ``ADEChallengeData2016/`` (created; existing files are
            overwritten).
        num_train (int): Images in ``images/training``. Defaults to 200.
        num_val (int): Images in ``images/validation``. Defaults to 50.
        size_range (tuple[int, int]): Each image's width and height are drawn
            uniformly from this inclusive range, so sizes are mostly not
            multiples of 32 or 64. Defaults to (192, 320).
        seed (int): Random seed; the same arguments write the same files.
            Defaults to 0.

    Returns:
        dict: Images per split, ``{'training': ..., 'validation': ...}``.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError('num_train and num_val must be >= 1, got '
                         f'{num_train} and {num_val}')
    lo, hi = size_range
    if lo < 32 or hi < lo:
        raise ValueError('size_range must be (min, max) with 32 <= min <= '
                         f'max, got {tuple(size_range)}')
    rng = np.random.default_rng(seed)
    counts = {}
    for (split, stem), num in zip(SPLITS, (num_train, num_val)):
        img_dir, ann_dir = (osp.join(root, kind, split)
                            for kind in ('images', 'annotations'))
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(1, num + 1):
            w, h = (int(v) for v in rng.integers(lo, hi + 1, size=2))
            img, label = draw_ade20k_scene(w, h, rng)
            name = f'{stem}_{i:08d}'
            img.save(osp.join(img_dir, name + '.jpg'), quality=95)
            Image.fromarray(label, mode='L').save(
                osp.join(ann_dir, name + '.png'))
        counts[split] = num
    return counts


def _step_index(pipeline, step_type: str) -> int:
    for i, step in enumerate(pipeline or []):
        if step.get('type') == step_type:
            return i
    raise ValueError(f'pipeline has no {step_type} step to rescale: '
                     f'{[s.get("type") for s in pipeline or []]}')


def ade20k_cfg_options(cfg,
                       root: str,
                       crop_size: Optional[Union[int, Tuple[int, int]]] = None,
                       num_workers: Optional[int] = None) -> Dict[str, object]:
    """Overrides that point an ADE20K segmentation config at another root.

    Sets ``data_root`` of the train, val and test datasets and, optionally,
    shrinks the stock 512x512 pipeline to train and test on small images
    quickly (on a CPU).

    Args:
        cfg (mmengine.Config): The loaded config (stock ADE20K pipelines:
            ``RandomResize`` + ``RandomCrop`` for training, ``Resize`` for
            testing).
        root (str): The dataset root (holding ``images/`` and
            ``annotations/``), e.g. one written by :func:`make_ade20k`.
        crop_size (int | tuple[int, int], optional): If given, the training
            crop (h, w); the resize scales keep the stock 4:1 (long:short)
            bound, i.e. (2048, 512) becomes (4 * h, h), and the data
            preprocessor pads training batches to this size.
        num_workers (int, optional): If given, dataloader workers; 0 also
            turns ``persistent_workers`` off (PyTorch requires it).

    Returns:
        dict: dotted key -> value, for ``Config.merge_from_dict`` or, as
        ``k=v`` strings, ``--cfg-options``.
    """
    if isinstance(crop_size, int):
        crop_size = (crop_size, crop_size)
    if crop_size is not None and (len(crop_size) != 2
                                  or min(crop_size) < 32):
        raise ValueError(f'crop_size must be an int or (h, w), each >= 32, '
                         f'got {crop_size}')
    opts: Dict[str, object] = {}
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        key = f'{split}_dataloader.dataset'
        pipeline = loader['dataset'].get('pipeline')
        opts[f'{key}.data_root'] = root
        if crop_size is not None:
            scale = (4 * crop_size[0], crop_size[0])
            if split == 'train':
                i = _step_index(pipeline, 'RandomResize')
                opts[f'{key}.pipeline.{i}.scale'] = scale
                i = _step_index(pipeline, 'RandomCrop')
                opts[f'{key}.pipeline.{i}.crop_size'] = tuple(crop_size)
            else:
                i = _step_index(pipeline, 'Resize')
                opts[f'{key}.pipeline.{i}.scale'] = scale
        if num_workers is not None:
            opts[f'{split}_dataloader.num_workers'] = num_workers
            if num_workers == 0:
                opts[f'{split}_dataloader.persistent_workers'] = False
    if crop_size is not None:
        opts['model.data_preprocessor.size'] = tuple(crop_size)
    return opts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='output folder (the ADEChallengeData2016 '
                        'data_root)')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--min-size', type=int, default=192,
                        help='smallest image width/height')
    parser.add_argument('--max-size', type=int, default=320,
                        help='largest image width/height')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    counts = make_ade20k(args.root, args.num_train, args.num_val,
                         (args.min_size, args.max_size), args.seed)
    names = ', '.join(f'{name} ({value})' for value, name in SCENE_CLASSES)
    print(f'wrote {counts["training"]} training and {counts["validation"]} '
          f'validation images to {args.root}\n'
          f'classes (PNG value): {names}; 0 = not labelled')


if __name__ == '__main__':
    main()
