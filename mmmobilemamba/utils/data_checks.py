"""Fail before training when a config's dataset is not on disk.

Without this, a missing dataset surfaces deep inside a dataset class (or, for
mmseg, as an empty dataset and a division by zero) after the model is built.
"""
import os.path as osp
from typing import Iterator, List, Tuple

# dataset type -> (what it is, how to get a small one in the real format)
# a dataset type without its own entry below
_OTHER_DATASET = ('the dataset', 'one of tools/dataset_converters/make_*.py '
                  '(COCO, ADE20K and ImageNet-folder formats)')
DATASET_HELP = {
    'ImageNet': ('ImageNet-1k in mmpretrain folder format',
                 'python tools/dataset_converters/make_imagenet_folder.py '
                 '{root}'),
    'CustomDataset': ('an image-folder classification dataset',
                      'python tools/dataset_converters/make_imagenet_folder.py '
                      '{root}'),
    'CocoDataset': ('COCO 2017 (annotations/instances_*.json, train2017/, '
                    'val2017/)',
                    'python tools/dataset_converters/make_coco.py {root}'),
    'ADE20KDataset': ('ADE20K (ADEChallengeData2016 images/ and '
                      'annotations/)',
                      'python tools/dataset_converters/make_ade20k.py {root}'),
}

_WRAPPED_KEYS = ('dataset', 'datasets')


def _iter_datasets(ds_cfg) -> Iterator[dict]:
    """Yield leaf dataset configs, unwrapping RepeatDataset/ConcatDataset."""
    if isinstance(ds_cfg, (list, tuple)):
        for d in ds_cfg:
            yield from _iter_datasets(d)
        return
    if not isinstance(ds_cfg, dict):
        return
    inner = [ds_cfg[k] for k in _WRAPPED_KEYS if k in ds_cfg]
    if inner:
        for d in inner:
            yield from _iter_datasets(d)
    else:
        yield ds_cfg


def _paths_of(ds: dict) -> List[Tuple[str, str]]:
    """(description, path) pairs a dataset config needs on disk."""
    root = ds.get('data_root') or ''
    paths = []
    if root:
        paths.append(('data_root', root))
    ann = ds.get('ann_file')
    if ann:
        paths.append(('ann_file', osp.join(root, ann)))
    prefix = ds.get('data_prefix')
    if isinstance(prefix, str) and prefix:
        prefix = dict(img_path=prefix)
    if isinstance(prefix, dict):
        for key, value in prefix.items():
            if isinstance(value, str) and value:
                paths.append((f'data_prefix.{key}', osp.join(root, value)))
    elif ds.get('split') and root:
        # mmpretrain's ImageNet: data_root/{split}/ (+ meta/{split}.txt)
        paths.append(('split folder', osp.join(root, ds['split'])))
    return paths


def check_dataset_paths(cfg, splits=('train', 'val', 'test')) -> None:
    """Raise ``FileNotFoundError`` naming every missing dataset path.

    Args:
        cfg (mmengine.Config): A runnable config.
        splits (tuple[str]): Which ``{split}_dataloader`` entries to check.
            Defaults to ('train', 'val', 'test').
    """
    problems = []
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for ds in _iter_datasets(loader.get('dataset')):
            missing = [(what, p) for what, p in _paths_of(ds)
                       if p and '://' not in p and not osp.exists(p)]
            if not missing:
                continue
            ds_type = str(ds.get('type', '')).split('.')[-1]
            what, how = DATASET_HELP.get(ds_type, _OTHER_DATASET)
            root = ds.get('data_root') or osp.dirname(missing[0][1])
            lines = '\n'.join(f'    {k}: {p}' for k, p in missing)
            problems.append(
                f'{split}_dataloader ({ds_type or "dataset"}): missing\n'
                f'{lines}\n  Put {what} there, or generate a small one in '
                f'the same format:\n    {how.format(root=root)}\n  and point '
                f'the config at it, e.g. --cfg-options '
                f'{split}_dataloader.dataset.data_root=...')
    if problems:
        raise FileNotFoundError('dataset not found\n' + '\n'.join(problems))
