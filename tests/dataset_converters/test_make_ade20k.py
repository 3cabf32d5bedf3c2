"""tools/dataset_converters/make_ade20k.py: folder layout, 150-class label
indexing with 0 = not labelled, readable by mmseg's ADE20KDataset,
deterministic, CLI."""
import glob
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from ..helpers import REPO, load_tool, run_tool

tool = load_tool('dataset_converters/make_ade20k.py')
ADE20K_SCENE_CLASSES = tool.SCENE_CLASSES
make_ade20k, draw_ade20k_scene = tool.make_ade20k, tool.draw_ade20k_scene


@pytest.fixture(scope='module')
def small_ade(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ADEChallengeData2016'))
    counts = make_ade20k(root, num_train=6, num_val=3, size_range=(96, 150),
                         seed=2)
    return root, counts


def test_layout_names_and_sizes(small_ade):
    root, counts = small_ade
    assert counts == {'training': 6, 'validation': 3}
    for split, stem, n in (('training', 'ADE_train', 6),
                           ('validation', 'ADE_val', 3)):
        imgs = sorted(glob.glob(osp.join(root, 'images', split, '*.jpg')))
        anns = sorted(glob.glob(osp.join(root, 'annotations', split,
                                         '*.png')))
        assert [osp.basename(p) for p in imgs] == [
            f'{stem}_{i:08d}.jpg' for i in range(1, n + 1)]
        assert [osp.splitext(osp.basename(p))[0] for p in anns] == [
            osp.splitext(osp.basename(p))[0] for p in imgs]
        for img_path, ann_path in zip(imgs, anns):
            img, ann = Image.open(img_path), Image.open(ann_path)
            assert img.mode == 'RGB' and ann.mode == 'L'
            assert img.size == ann.size
            assert all(96 <= s <= 150 for s in img.size)


def test_labels_use_ade20k_indexing_with_zero_unlabelled(small_ade):
    root, _ = small_ade
    allowed = {0} | {v for v, _ in ADE20K_SCENE_CLASSES}
    seen = set()
    for path in glob.glob(osp.join(root, 'annotations', '*', '*.png')):
        label = np.asarray(Image.open(path))
        assert label.dtype == np.uint8
        assert label.min() >= 0 and label.max() <= 150
        values = set(np.unique(label).tolist())
        assert values <= allowed, values - allowed
        # a thin unlabelled band only: most pixels carry a class
        assert 0 < (label == 0).mean() < 0.15
        seen |= values
    assert 3 in seen and 0 in seen  # sky is in every scene


def test_class_values_match_mmseg_ade20k_names():
    from mmseg.datasets import ADE20KDataset
    names = ADE20KDataset.METAINFO['classes']
    assert len(names) == 150
    for value, name in ADE20K_SCENE_CLASSES:
        assert names[value - 1].strip() == name, (value, name)


def test_mmseg_ade20k_dataset_reads_it(small_ade):
    from mmseg.datasets import ADE20KDataset
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    root, _ = small_ade
    # LoadAnnotations takes reduce_zero_label=True from ADE20KDataset
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations')]
    ds = ADE20KDataset(
        data_root=root,
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation'),
        pipeline=pipeline)
    assert len(ds) == 3
    sample = ds[0]
    raw = np.asarray(Image.open(ds.get_data_info(0)['seg_map_path']))
    seg = sample['gt_seg_map']
    assert seg.shape == raw.shape == sample['img'].shape[:2]
    # reduce_zero_label: 0 -> 255 (ignored), v -> v - 1
    assert (seg[raw == 0] == 255).all()
    assert (seg[raw > 0] == raw[raw > 0] - 1).all()


def test_same_seed_same_data(tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    make_ade20k(a, 2, 1, (64, 80), seed=7)
    make_ade20k(b, 2, 1, (64, 80), seed=7)
    rel = osp.join('annotations', 'training', 'ADE_train_00000002.png')
    assert (np.asarray(Image.open(osp.join(a, rel))) == np.asarray(
        Image.open(osp.join(b, rel)))).all()


def test_objects_stand_on_the_ground_and_sky_is_on_top():
    rng = np.random.default_rng(0)
    for _ in range(5):
        _, label = draw_ade20k_scene(160, 120, rng)
        assert (label[0] == 3).mean() > 0.5  # top row is mostly sky
        assert not (label[-1] == 3).any()  # bottom row is never sky


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match='size_range'):
        make_ade20k(str(tmp_path), 1, 1, size_range=(100, 50))
    with pytest.raises(ValueError, match='num_train'):
        make_ade20k(str(tmp_path), 0, 1)


def test_cli(tmp_path):
    root = str(tmp_path / 'ade')
    out = run_tool('tools/dataset_converters/make_ade20k.py', root,
                   '--num-train', '2', '--num-val', '1', '--min-size', '64',
                   '--max-size', '72')
    assert 'wrote 2 training and 1 validation images' in out
    assert osp.isfile(osp.join(root, 'annotations', 'validation',
                               'ADE_val_00000001.png'))


def test_cfg_options_point_a_config_at_the_data(small_ade):
    from mmengine.config import Config

    root, _ = small_ade
    cfg = Config.fromfile(
        osp.join(REPO, 'configs',
                 'pspnet/pspnet_mobilemamba-b4_80k_ade20k-512x512.py'),
        import_custom_modules=False)
    cfg.merge_from_dict(tool.ade20k_cfg_options(cfg, root, crop_size=96,
                                                num_workers=0))
    train = cfg.train_dataloader
    assert train.dataset.data_root == root
    steps = {s['type']: s for s in train.dataset.pipeline}
    assert steps['RandomCrop']['crop_size'] == (96, 96)
    assert steps['RandomResize']['scale'] == (384, 96)
    assert train.num_workers == 0 and train.persistent_workers is False
    for split in ('val', 'test'):
        loader = cfg[f'{split}_dataloader']
        assert loader.dataset.data_root == root
        assert {s['type']: s for s in loader.dataset.pipeline}[
            'Resize']['scale'] == (384, 96)
    assert cfg.model.data_preprocessor.size == (96, 96)
    with pytest.raises(ValueError, match='crop_size'):
        tool.ade20k_cfg_options(cfg, root, crop_size=(8, 8))
