"""Session fixtures: small generated datasets, built once per session."""
import pytest


@pytest.fixture(scope='session')
def tiny_imagenet_folder(tmp_path_factory):
    """10 shape classes, 12 train / 4 val images each, 56 px."""
    from mmmobilemamba.data_gen import make_imagenet_folder
    root = str(tmp_path_factory.mktemp('tiny_imagenet_folder'))
    make_imagenet_folder(root, num_train_per_class=12, num_val_per_class=4,
                         image_size=56, seed=0)
    return root
