"""tools/dataset_converters/make_imagenet_folder.py's real-image source
(scikit-learn's digit scans): layout, labels, disjoint splits, errors."""
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from ..helpers import load_tool

tool = load_tool('dataset_converters/make_imagenet_folder.py')
DIGIT_CLASSES, make_imagenet_folder = (tool.DIGIT_CLASSES,
                                       tool.make_imagenet_folder)

pytest.importorskip('sklearn')


def _read_meta(root, split):
    with open(osp.join(root, 'meta', f'{split}.txt')) as f:
        return [line.split() for line in f.read().splitlines()]


def test_digits_layout_labels_and_pixels(tmp_path):
    root = str(tmp_path / 'd')
    counts = make_imagenet_folder(root, 3, 2, image_size=24, source='digits')
    assert counts == {'train': 30, 'val': 20}
    assert sorted(os.listdir(osp.join(root, 'train'))) == list(DIGIT_CLASSES)
    for split, per_class in (('train', 3), ('val', 2)):
        lines = _read_meta(root, split)
        assert len(lines) == 10 * per_class
        for rel, label in lines:
            assert rel.split('/')[0] == DIGIT_CLASSES[int(label)]
            img = Image.open(osp.join(root, split, rel))
            assert img.mode == 'RGB' and img.size == (24, 24)
    # ink is dark on white paper, and each image is one of the scans of its
    # digit (JPEG and upscaling blur it, so compare at 8x8)
    scans = tool.load_digit_scans()
    rel, label = _read_meta(root, 'val')[0]
    img = Image.open(osp.join(root, 'val', rel)).convert('L')
    small = np.asarray(img.resize((8, 8), Image.BILINEAR), dtype=float)
    ink = (255.0 - small) * 16.0 / 255.0
    errors = [np.abs(ink - s).mean() for s in scans[int(label)]]
    others = [np.abs(ink - s).mean() for d, group in scans.items()
              if d != int(label) for s in group]
    assert min(errors) < min(others)
    assert small.max() > 200  # white paper


def _pixels(root, split):
    return {rel: np.asarray(Image.open(osp.join(root, split, rel)))
            for rel, _ in _read_meta(root, split)}


def test_splits_are_disjoint_and_val_is_stable(tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    make_imagenet_folder(a, 5, 3, image_size=16, source='digits', seed=3)
    make_imagenet_folder(b, 2, 3, image_size=16, source='digits', seed=3)
    val_a, val_b = _pixels(a, 'val'), _pixels(b, 'val')
    assert val_a.keys() == val_b.keys()
    assert all(np.array_equal(val_a[k], val_b[k]) for k in val_a)
    train = _pixels(a, 'train')
    for rel, img in val_a.items():
        digit = rel.split('/')[0]
        assert not any(np.array_equal(img, t) for r, t in train.items()
                       if r.startswith(digit + '/'))


def test_digit_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match='174 images'):
        make_imagenet_folder(str(tmp_path), 170, 10, source='digits')
    with pytest.raises(ValueError, match="unknown source 'photos'"):
        make_imagenet_folder(str(tmp_path), source='photos')
    with pytest.raises(ValueError, match='10 classes'):
        make_imagenet_folder(str(tmp_path), 1, 1, source='digits',
                             classes=('a', 'b'))
    with pytest.raises(ValueError, match='num_val_per_class'):
        make_imagenet_folder(str(tmp_path), 1, -1, source='digits')
