"""Session fixtures: small generated datasets (ImageNet folder, COCO,
ADE20K, written by tools/dataset_converters/), each built once per
session."""
import pytest


@pytest.fixture(autouse=True, scope='module')
def _isolate_default_scope():
    """Drop the mmengine default scopes a test module created (building an
    mmseg dataset sets 'mmseg', say), so that no module's registry lookups
    depend on which modules ran before it."""
    try:
        from mmengine.registry import DefaultScope
    except ImportError:
        yield
        return
    before = dict(DefaultScope._instance_dict)
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(before)


@pytest.fixture(scope='session')
def tiny_imagenet_folder(tmp_path_factory):
    """10 shape classes, 12 train / 4 val images each, 56 px."""
    from .helpers import load_tool
    root = str(tmp_path_factory.mktemp('tiny_imagenet_folder'))
    tool = load_tool('dataset_converters/make_imagenet_folder.py')
    tool.make_imagenet_folder(root, num_train_per_class=12,
                              num_val_per_class=4, image_size=56, seed=0)
    return root


@pytest.fixture(scope='session')
def tiny_coco(tmp_path_factory):
    """4 train / 2 val images of 160-224 px with 1-3 objects each."""
    from .helpers import load_tool
    root = str(tmp_path_factory.mktemp('tiny_coco'))
    load_tool('dataset_converters/make_coco.py').make_coco(
        root, num_train=4, num_val=2, size_range=(160, 224), max_objects=3,
        seed=0)
    return root


@pytest.fixture(scope='session')
def tiny_ade20k(tmp_path_factory):
    """8 training / 3 validation scenes of 120-180 px (ADE20K layout)."""
    from .helpers import load_tool
    root = str(tmp_path_factory.mktemp('ADEChallengeData2016'))
    load_tool('dataset_converters/make_ade20k.py').make_ade20k(
        root, num_train=8, num_val=3, size_range=(120, 180), seed=0)
    return root
