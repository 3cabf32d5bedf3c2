"""tools/dataset_converters/make_coco.py: json readable by pycocotools,
masks inside their boxes, deterministic, and the CLI."""
import json
import os.path as osp

import numpy as np
import pytest

from ..helpers import load_tool, run_tool

tool = load_tool('dataset_converters/make_coco.py')
COCO_CATEGORIES = tool.COCO_CATEGORIES
COCO_SHAPE_CATEGORIES = tool.COCO_SHAPE_CATEGORIES
make_coco, polygon_area, shape_polygon = (tool.make_coco, tool.polygon_area,
                                          tool.shape_polygon)


@pytest.fixture(scope='module')
def small_coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco'))
    counts = make_coco(root, num_train=12, num_val=4, size_range=(96, 160),
                       max_objects=4, seed=1)
    return root, counts


def test_layout_and_counts(small_coco):
    root, counts = small_coco
    assert counts['train2017'] == 12 and counts['val2017'] == 4
    for split in ('train2017', 'val2017'):
        ann = osp.join(root, 'annotations', f'instances_{split}.json')
        data = json.load(open(ann))
        assert len(data['images']) == counts[split]
        assert len(data['annotations']) == counts[f'{split}_annotations']
        for img in data['images']:
            assert osp.isfile(osp.join(root, split, img['file_name']))


def test_pycocotools_reads_it_and_masks_lie_in_boxes(small_coco):
    from PIL import Image
    from pycocotools.coco import COCO
    root, _ = small_coco
    coco = COCO(osp.join(root, 'annotations', 'instances_train2017.json'))
    assert len(coco.getCatIds()) == 80
    used = {a['category_id'] for a in coco.loadAnns(coco.getAnnIds())}
    assert used <= {c[0] for c in COCO_SHAPE_CATEGORIES} and len(used) >= 3
    assert len(coco.getAnnIds()) >= 12  # at least one object per image
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        w, h = Image.open(osp.join(root, 'train2017',
                                   info['file_name'])).size
        assert (w, h) == (info['width'], info['height'])
        assert 96 <= w <= 160 and 96 <= h <= 160
        union = np.zeros((h, w), bool)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id)):
            x, y, bw, bh = ann['bbox']
            assert x >= 0 and y >= 0 and x + bw <= w and y + bh <= h
            poly = np.array(ann['segmentation'][0]).reshape(-1, 2)
            assert poly[:, 0].min() >= x - 1e-4
            assert poly[:, 0].max() <= x + bw + 1e-4
            assert poly[:, 1].min() >= y - 1e-4
            assert poly[:, 1].max() <= y + bh + 1e-4
            mask = coco.annToMask(ann).astype(bool)
            ys, xs = np.nonzero(mask)
            assert xs.min() >= int(x) - 1 and xs.max() <= x + bw + 1
            assert ys.min() >= int(y) - 1 and ys.max() <= y + bh + 1
            # rasterised area matches the polygon's area
            assert abs(mask.sum() - ann['area']) < 0.25 * ann['area'] + 20
            assert not (union & mask).any(), 'objects must not overlap'
            union |= mask


def test_categories_are_cocos_80_in_mmdet_order():
    pytest.importorskip('mmdet')
    from mmdet.datasets import CocoDataset
    assert tuple(n for _, n in COCO_CATEGORIES) == \
        CocoDataset.METAINFO['classes']
    ids = dict(COCO_CATEGORIES)
    for cat_id, name, _, _ in COCO_SHAPE_CATEGORIES:
        assert ids[cat_id] == name


def test_same_seed_same_data(tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    make_coco(a, 3, 1, (96, 128), seed=5)
    make_coco(b, 3, 1, (96, 128), seed=5)
    ja = open(osp.join(a, 'annotations', 'instances_val2017.json')).read()
    jb = open(osp.join(b, 'annotations', 'instances_val2017.json')).read()
    assert ja == jb


@pytest.mark.parametrize('shape', [c[3] for c in COCO_SHAPE_CATEGORIES])
def test_shapes_stay_within_their_radius(shape):
    pts = shape_polygon(shape, 50, 60, 20, angle=0.7)
    assert np.hypot(pts[:, 0] - 50, pts[:, 1] - 60).max() <= 20 + 1e-9
    assert polygon_area(pts) > 0.25 * 20**2


def test_object_size_and_classes_are_honoured(tmp_path):
    root = str(tmp_path / 'sel')
    make_coco(root, 8, 2, (128, 128), max_objects=2, seed=3,
              object_size=(0.3, 0.35), classes=['disc', 'tv'])
    data = json.load(open(osp.join(root, 'annotations',
                                   'instances_train2017.json')))
    assert len(data['categories']) == 80  # all of COCO's are still listed
    assert {a['category_id'] for a in data['annotations']} <= {37, 72}
    for ann in data['annotations']:
        # every vertex is within the circumradius (0.3-0.35 x 128 px)
        assert max(ann['bbox'][2:]) <= 2 * 0.35 * 128 + 0.1
        if ann['category_id'] == 37:  # a disc's box is its diameter
            assert min(ann['bbox'][2:]) >= 2 * 0.3 * 128 * 0.98


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match='num_train'):
        make_coco(str(tmp_path), num_train=0)
    with pytest.raises(ValueError, match='size_range'):
        make_coco(str(tmp_path), size_range=(200, 100))
    with pytest.raises(ValueError, match='object_size'):
        make_coco(str(tmp_path), object_size=(0.3, 0.2))
    with pytest.raises(ValueError, match='unknown class'):
        make_coco(str(tmp_path), classes=['blob'])
    with pytest.raises(ValueError, match='unknown shape'):
        shape_polygon('blob', 0, 0, 1, 0)


def test_cli(tmp_path):
    root = str(tmp_path / 'cli_coco')
    out = run_tool('tools/dataset_converters/make_coco.py', root,
                   '--num-train', '3', '--num-val', '2', '--min-size', '96',
                   '--max-size', '96', '--object-size', '0.2', '0.25',
                   '--classes', 'triangle', 'stop sign')
    assert 'wrote 3 train images' in out and '2 val images' in out
    assert 'categories: stop sign (octagon), pizza (triangle)' in out
    data = json.load(open(osp.join(root, 'annotations',
                                   'instances_val2017.json')))
    assert {(i['width'], i['height']) for i in data['images']} == {(96, 96)}
