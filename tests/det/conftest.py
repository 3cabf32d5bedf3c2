"""Fixtures of the detection tests: a tiny generated COCO dataset."""
import pytest


@pytest.fixture(scope='session')
def tiny_coco(tmp_path_factory):
    """4 train / 2 val images of 160-224 px with 1-3 objects each."""
    from mmmobilemamba.data_gen import make_coco
    root = str(tmp_path_factory.mktemp('tiny_coco'))
    make_coco(root, num_train=4, num_val=2, size_range=(160, 224),
              max_objects=3, seed=0)
    return root
