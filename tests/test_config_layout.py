"""configs/ follows OpenMMLab's layout, every config loads, and every config
path the docs and tools name exists."""
import glob
import os.path as osp
import re

import pytest

from .helpers import REPO

# the one short name kept for the command users type
ALIASES = {'retinanet_mobilemamba_b1.py'}


def _configs():
    paths = glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    return sorted(osp.relpath(p, osp.join(REPO, 'configs')) for p in paths
                  if '_base_' not in p.split(osp.sep))


def test_each_config_sits_in_its_algorithm_folder():
    for rel in _configs():
        if rel in ALIASES:
            continue
        folder, name = rel.split(osp.sep)
        # retinanet/retinanet_..., mobilemamba/mobilemamba-t2_...,
        # resnet/resnet18_...
        assert re.match(rf'{re.escape(folder)}[0-9]*[-_]', name), rel
        if folder not in ('mobilemamba', 'resnet'):
            assert f'{folder}_mobilemamba-' in name, rel


@pytest.mark.parametrize('rel', _configs())
def test_config_loads(rel):
    pytest.importorskip('mmdet')
    pytest.importorskip('mmseg')
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, 'configs', rel),
                          import_custom_modules=False)
    assert 'model' in cfg


def test_every_named_config_exists():
    sources = ['README.md', 'model-index.yml', 'configs/README.md',
               'configs/mobilemamba/metafile.yml']
    sources += glob.glob(osp.join(REPO, 'docs', '**', '*.md'),
                         recursive=True)
    for pattern in ('tools/**/*.py', 'tests/**/*.py', 'configs/**/*.py'):
        sources += glob.glob(osp.join(REPO, pattern), recursive=True)
    missing = []
    for source in sources:
        with open(osp.join(REPO, source), encoding='utf-8') as f:
            text = f.read()
        for path in re.findall(r'(?<![\w/.-])configs/[\w/.-]+?\.py\b',
                               text):
            if not osp.isfile(osp.join(REPO, path)):
                missing.append(f'{osp.relpath(source, REPO)}: {path}')
    assert not missing, missing
