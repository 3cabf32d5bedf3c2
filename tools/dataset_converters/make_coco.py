"""Write a small detection / instance-segmentation dataset in COCO format.

    python tools/dataset_converters/make_coco.py data/coco_shapes \
        [--num-train 200] [--num-val 50] [--min-size 192] [--max-size 256]
        [--max-objects 4] [--object-size 0.12 0.3]
        [--classes disc triangle ...] [--seed 0]

Layout, file names and json fields are COCO 2017's::

    ROOT/annotations/instances_train2017.json   ROOT/train2017/000000000001.jpg
    ROOT/annotations/instances_val2017.json     ROOT/val2017/000000100001.jpg

so mmdet's ``CocoDataset`` and ``CocoMetric`` read it with the stock configs;
:func:`coco_cfg_options` gives the ``--cfg-options`` that point a config at
it (docs/detection.md).

Each image has a procedural textured background and one to ``max_objects``
non-overlapping, textured, randomly rotated polygons; an object's mask is its
polygon, its box the polygon's bounding box. The json lists all 80 COCO
categories with their real ids, and the six shape classes are stored under
six of them (:data:`COCO_SHAPE_CATEGORIES`; 'pizza' is a triangle): mmdet maps
names to labels through the json, so a stock 80-class config trains and
evaluates on it unchanged, and categories without objects drop out of the
mean AP.
"""
import argparse
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

#: The 80 COCO detection categories in id order.
COCO_CATEGORY_NAMES: Tuple[str, ...] = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train',
    'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
    'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag',
    'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon',
    'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot',
    'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
    'hair drier', 'toothbrush')
# ids run from 1 to 90; COCO 2017 leaves these ten unused
_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
#: (id, name) of the 80 COCO categories.
COCO_CATEGORIES: Tuple[Tuple[int, str], ...] = tuple(
    zip([i for i in range(1, 91) if i not in _UNUSED_IDS],
        COCO_CATEGORY_NAMES))

#: (COCO category id, COCO category name, supercategory, shape drawn)
COCO_SHAPE_CATEGORIES: Tuple[Tuple[int, str, str, str], ...] = (
    (5, 'airplane', 'vehicle', 'cross'),
    (13, 'stop sign', 'outdoor', 'octagon'),
    (37, 'sports ball', 'sports', 'disc'),
    (38, 'kite', 'sports', 'rhombus'),
    (59, 'pizza', 'food', 'triangle'),
    (72, 'tv', 'electronic', 'rectangle'),
)


def shape_polygon(shape: str, cx: float, cy: float, r: float,
                  angle: float) -> np.ndarray:
    """Vertices (K, 2) of ``shape`` centred at (cx, cy).

    Every vertex lies within ``r`` of the centre, so a shape placed at least
    ``r`` from each border is fully inside the image.

    Args:
        shape (str): One of 'cross', 'octagon', 'disc', 'rhombus',
            'triangle', 'rectangle'.
        cx (float): Centre x in pixels.
        cy (float): Centre y in pixels.
        r (float): Circumradius in pixels.
        angle (float): Rotation in radians.
    """
    if shape == 'disc':
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == 'octagon':
        t = np.arange(8) * 2 * np.pi / 8 + np.pi / 8
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == 'triangle':
        t = np.arange(3) * 2 * np.pi / 3
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == 'rhombus':  # one diagonal half the other
        pts = np.array([[1, 0], [0, 0.5], [-1, 0], [0, -0.5]], float)
    elif shape == 'rectangle':  # 16:10, corners on the unit circle
        a = np.arctan2(10, 16)
        c, s = np.cos(a), np.sin(a)
        pts = np.array([[c, s], [-c, s], [-c, -s], [c, -s]])
    elif shape == 'cross':  # a plus sign, arms 0.36 wide (unit radius)
        w, L = 0.18, np.sqrt(1 - 0.18**2)
        pts = np.array([[w, w], [w, L], [-w, L], [-w, w], [-L, w], [-L, -w],
                        [-w, -w], [-w, -L], [w, -L], [w, -w], [L, -w],
                        [L, w]])
    else:
        raise ValueError(f'unknown shape {shape!r}; expected one of '
                         f'{[c[3] for c in COCO_SHAPE_CATEGORIES]}')
    rot = np.array([[np.cos(angle), -np.sin(angle)],
                    [np.sin(angle), np.cos(angle)]])
    return pts @ rot.T * r + np.array([cx, cy])


def polygon_area(pts: np.ndarray) -> float:
    """Area of a simple polygon (shoelace formula)."""
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
                 / 2)


def _texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """An (h, w, 3) float texture in [0, 255] of a random kind."""
    c1 = rng.uniform(0, 255, 3)
    c2 = rng.uniform(0, 255, 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(5)
    if kind == 0:  # smooth gradient at a random angle
        a = rng.uniform(0, 2 * np.pi)
        t = (np.cos(a) * xx + np.sin(a) * yy)
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    elif kind == 1:  # stripes at a random angle and period
        a = rng.uniform(0, np.pi)
        period = rng.uniform(6, 24)
        t = (np.sin((np.cos(a) * xx + np.sin(a) * yy) * 2 * np.pi / period)
             > 0).astype(np.float32)
    elif kind == 2:  # checkerboard
        cell = int(rng.integers(6, 24))
        t = ((xx // cell + yy // cell) % 2).astype(np.float32)
    elif kind == 3:  # blotches: low-resolution noise, upsampled
        small = rng.uniform(0, 1, (max(2, h // 24), max(2, w // 24)))
        t = np.asarray(
            Image.fromarray((small * 255).astype(np.uint8)).resize(
                (w, h), Image.BILINEAR), np.float32) / 255
    else:  # flat
        t = np.zeros((h, w), np.float32)
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    img += rng.normal(0, rng.uniform(4, 16), (h, w, 3))
    return np.clip(img, 0, 255)


def _place(rng: np.random.Generator, w: int, h: int, n: int,
           r_range: Tuple[float, float]) -> List[Tuple[float, float, float]]:
    """Up to ``n`` non-overlapping (cx, cy, r) discs inside a w x h image."""
    placed = []
    side = min(w, h)
    for _ in range(50 * n):
        if len(placed) == n:
            break
        r = rng.uniform(*r_range) * side
        cx = rng.uniform(r + 1, w - r - 1)
        cy = rng.uniform(r + 1, h - r - 1)
        if all(np.hypot(cx - x, cy - y) > r + q + 2 for x, y, q in placed):
            placed.append((cx, cy, r))
    return placed


def draw_coco_image(w: int, h: int, max_objects: int,
                    rng: np.random.Generator,
                    categories: Sequence[tuple] = COCO_SHAPE_CATEGORIES,
                    r_range: Tuple[float, float] = (0.12, 0.3)):
    """Draw one image and its objects.

    Args:
        w (int): Width in pixels.
        h (int): Height in pixels.
        max_objects (int): At most this many objects (at least one).
        rng (np.random.Generator): Random source.
        categories (Sequence[tuple]): (id, name, supercategory, shape) rows.
        r_range (tuple[float, float]): Object circumradius range as a
            fraction of the shorter image side.

    Returns:
        tuple: (PIL RGB image, list of (category id, polygon (K, 2))).
    """
    img = _texture(h, w, rng)
    objects = []
    for cx, cy, r in _place(rng, w, h, int(rng.integers(1, max_objects + 1)),
                            r_range):
        cat = categories[int(rng.integers(len(categories)))]
        pts = shape_polygon(cat[3], cx, cy, r, rng.uniform(0, 2 * np.pi))
        mask_img = Image.new('L', (w, h), 0)
        ImageDraw.Draw(mask_img).polygon([tuple(p) for p in pts], fill=255)
        mask = np.asarray(mask_img, np.float32)[..., None] / 255
        # the object gets its own texture, so colour alone cannot find it
        img = img * (1 - mask) + _texture(h, w, rng) * mask
        objects.append((cat[0], pts))
    return Image.fromarray(img.astype(np.uint8)), objects


def select_shape_categories(
        classes: Optional[Sequence[str]] = None) -> Tuple[tuple, ...]:
    """Rows of :data:`COCO_SHAPE_CATEGORIES` named by COCO name or shape.

    Args:
        classes (Sequence[str], optional): e.g. ``['disc', 'tv']``. None
            selects all six. Rows keep the order of the table.
    """
    if classes is None:
        return COCO_SHAPE_CATEGORIES
    known = {n for c in COCO_SHAPE_CATEGORIES for n in (c[1], c[3])}
    unknown = [name for name in classes if name not in known]
    if unknown:
        raise ValueError(
            f'unknown class {unknown[0]!r}; expected a COCO name or a shape '
            f'of {[(c[1], c[3]) for c in COCO_SHAPE_CATEGORIES]}')
    rows = tuple(c for c in COCO_SHAPE_CATEGORIES
                 if c[1] in classes or c[3] in classes)
    if not rows:
        raise ValueError('classes must name at least one class')
    return rows


def make_coco(root: str,
              num_train: int = 200,
              num_val: int = 50,
              size_range: Tuple[int, int] = (192, 256),
              max_objects: int = 4,
              seed: int = 0,
              object_size: Tuple[float, float] = (0.12, 0.3),
              classes: Optional[Sequence[str]] = None) -> Dict[str, int]:
    """Write a COCO-format dataset under ``root``.

    Args:
        root (str): Output folder (created; existing files are overwritten).
        num_train (int): Images in train2017. Defaults to 200.
        num_val (int): Images in val2017. Defaults to 50.
        size_range (tuple[int, int]): Each image's width and height are drawn
            uniformly from this inclusive range. Defaults to (192, 256).
        max_objects (int): Objects per image are 1 to this. Defaults to 4.
        seed (int): Random seed; the same arguments write the same files.
            Defaults to 0.
        object_size (tuple[float, float]): Range of an object's circumradius
            as a fraction of the image's shorter side. Defaults to
            (0.12, 0.3).
        classes (Sequence[str], optional): Draw only these classes, each a
            COCO name ('sports ball') or a shape ('disc'); the json still
            lists all 80 categories. Defaults to all six.

    Returns:
        dict: Images and annotations per split, e.g.
        ``{'train2017': 200, 'train2017_annotations': 503, ...}``.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError('num_train and num_val must be >= 1, got '
                         f'{num_train} and {num_val}')
    lo, hi = size_range
    if lo < 64 or hi < lo:
        raise ValueError('size_range must be (min, max) with 64 <= min <= '
                         f'max, got {tuple(size_range)}')
    if max_objects < 1:
        raise ValueError(f'max_objects must be >= 1, got {max_objects}')
    r_lo, r_hi = (float(v) for v in object_size)
    if not 0 < r_lo <= r_hi <= 0.45:
        raise ValueError('object_size must be (min, max) fractions of the '
                         'shorter side with 0 < min <= max <= 0.45, got '
                         f'{tuple(object_size)}')
    drawn = select_shape_categories(classes)
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    supercategory = {c[0]: c[2] for c in COCO_SHAPE_CATEGORIES}
    categories = [
        dict(id=cid, name=name, supercategory=supercategory.get(cid, 'none'))
        for cid, name in COCO_CATEGORIES
    ]
    counts = {}
    ann_id = 1
    for split, num, first_id in (('train2017', num_train, 1),
                                 ('val2017', num_val, 100001)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for img_id in range(first_id, first_id + num):
            w, h = (int(v) for v in rng.integers(lo, hi + 1, size=2))
            img, objects = draw_coco_image(w, h, max_objects, rng, drawn,
                                           (r_lo, r_hi))
            file_name = f'{img_id:012d}.jpg'
            img.save(osp.join(root, split, file_name), quality=92)
            images.append(dict(id=img_id, file_name=file_name, width=w,
                               height=h, license=1))
            for cat_id, pts in objects:
                # box and area from the rounded polygon that is written
                pts = np.round(pts, 2)
                (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
                annotations.append(dict(
                    id=ann_id, image_id=img_id, category_id=cat_id,
                    segmentation=[[float(v) for v in pts.ravel()]],
                    area=round(polygon_area(pts), 2),
                    bbox=[float(x0), float(y0), float(x1 - x0),
                          float(y1 - y0)],
                    iscrowd=0))
                ann_id += 1
        data = dict(
            info=dict(description='mmmobilemamba procedural shapes in COCO '
                      'format', version='1.0', year=2026),
            licenses=[dict(id=1, name='generated', url='')],
            images=images, annotations=annotations, categories=categories)
        with open(osp.join(root, 'annotations', f'instances_{split}.json'),
                  'w') as f:
            json.dump(data, f)
        counts[split] = len(images)
        counts[f'{split}_annotations'] = len(annotations)
    return counts


def coco_cfg_options(cfg, root: str,
                     image_scale: Optional[Tuple[int, int]] = None,
                     num_workers: Optional[int] = None) -> Dict[str, object]:
    """Overrides that point a COCO detection config at another COCO root.

    Sets ``data_root`` of the train, val and test datasets (looking through
    a ``RepeatDataset`` wrapper, as in the SSDLite configs) and ``ann_file``
    of the val / test ``CocoMetric``.

    Args:
        cfg (mmengine.Config): The loaded config.
        root (str): The COCO root (holding ``annotations/``).
        image_scale (tuple[int, int], optional): If given, the ``scale``
            (width, height) of every pipeline's ``Resize``.
        num_workers (int, optional): If given, dataloader workers; 0 also
            turns ``persistent_workers`` off (PyTorch requires it).

    Returns:
        dict: dotted key -> value, for ``Config.merge_from_dict`` or, as
        ``k=v`` strings, ``--cfg-options``.
    """
    opts: Dict[str, object] = {}
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        key = f'{split}_dataloader.dataset'
        dataset = loader['dataset']
        if 'dataset' in dataset:  # RepeatDataset & co.
            key += '.dataset'
            dataset = dataset['dataset']
        opts[f'{key}.data_root'] = root
        if image_scale is not None:
            steps = [s.get('type') for s in dataset.get('pipeline') or []]
            if 'Resize' not in steps:
                raise ValueError(
                    f'pipeline has no Resize step to rescale: {steps}')
            opts[f'{key}.pipeline.{steps.index("Resize")}.scale'] = \
                tuple(image_scale)
        if num_workers is not None:
            opts[f'{split}_dataloader.num_workers'] = num_workers
            if num_workers == 0:
                opts[f'{split}_dataloader.persistent_workers'] = False
    for split in ('val', 'test'):
        evaluator = cfg.get(f'{split}_evaluator')
        if isinstance(evaluator, dict) and 'ann_file' in evaluator:
            opts[f'{split}_evaluator.ann_file'] = osp.join(
                root, 'annotations', 'instances_val2017.json')
    return opts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='output folder (the COCO data_root)')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--min-size', type=int, default=192,
                        help='smallest image width/height')
    parser.add_argument('--max-size', type=int, default=256,
                        help='largest image width/height')
    parser.add_argument('--max-objects', type=int, default=4,
                        help='objects per image: 1 to this')
    parser.add_argument('--object-size', type=float, nargs=2,
                        default=(0.12, 0.3), metavar=('MIN', 'MAX'),
                        help='object circumradius range, as a fraction of '
                        'the shorter image side')
    parser.add_argument('--classes', nargs='+', default=None,
                        help='draw only these classes (COCO names or '
                        'shapes: ' + ', '.join(
                            c[3] for c in COCO_SHAPE_CATEGORIES) + ')')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    counts = make_coco(args.root, args.num_train, args.num_val,
                       (args.min_size, args.max_size), args.max_objects,
                       args.seed, tuple(args.object_size), args.classes)
    names = ', '.join(f'{c[1]} ({c[3]})'
                      for c in select_shape_categories(args.classes))
    print(f'wrote {counts["train2017"]} train images '
          f'({counts["train2017_annotations"]} objects) and '
          f'{counts["val2017"]} val images '
          f'({counts["val2017_annotations"]} objects) to {args.root}\n'
          f'categories: {names}')


if __name__ == '__main__':
    main()
