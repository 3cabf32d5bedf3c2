"""Images from a folder as the model's normalised input tensors.

Used for int8 calibration (ExecuTorch and onnxruntime alike) and for
measuring the accuracy of an exported model: each image goes through the
config's test pipeline (loading, resizing, cropping: exactly what
``tools/test.py`` feeds the model) and is then normalised with the
data preprocessor's mean/std and channel order, which the exported graphs
leave to the host.
"""
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

#: File endings read as images (lower case).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif',
                    '.tiff', '.webp')


def list_images(folder: str) -> List[str]:
    """Every image under ``folder`` (recursively), sorted by path.

    Raises:
        FileNotFoundError: If ``folder`` does not exist.
        ValueError: If it holds no image.
    """
    if not osp.isdir(folder):
        raise FileNotFoundError(f'calibration folder {folder} not found')
    paths = []
    for root, _, files in os.walk(folder):
        paths += [osp.join(root, f) for f in files
                  if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not paths:
        raise ValueError(f'calibration folder {folder} holds no image '
                         f'({", ".join(IMAGE_EXTENSIONS)})')
    return sorted(paths)


def spread(paths: Sequence[str], num: Optional[int]) -> List[str]:
    """``num`` paths evenly spaced over the sorted list (all if None), so
    that a small calibration set still covers every class folder."""
    if num is None or num >= len(paths):
        return list(paths)
    if num < 1:
        raise ValueError(f'the number of calibration images must be >= 1, '
                         f'got {num}')
    idx = np.linspace(0, len(paths) - 1, num).round().astype(int)
    return [paths[i] for i in idx]


def test_pipeline(cfg) -> list:
    """The config's test (else val) pipeline.

    Raises:
        ValueError: If the config has neither.
    """
    for key in ('test_dataloader', 'val_dataloader'):
        loader = cfg.get(key) or {}
        dataset = loader.get('dataset') or {}
        # wrappers (ConcatDataset, RepeatDataset, ...) nest the real one
        while 'pipeline' not in dataset and isinstance(
                dataset.get('dataset'), dict):
            dataset = dataset['dataset']
        pipeline = dataset.get('pipeline')
        if pipeline:
            return list(pipeline)
    name = getattr(cfg, 'filename', None) or 'the config'
    raise ValueError(
        f'{name} has no test_dataloader (or val_dataloader) pipeline; '
        'calibration images are read through it. Add one, or pass a config '
        'that has it.')


def normalisation(cfg) -> Tuple[List[float], List[float], bool]:
    """(mean, std, swap BGR->RGB) of the config's data preprocessor."""
    pre = cfg.get('data_preprocessor') or cfg.model.get(
        'data_preprocessor') or {}
    mean = list(pre.get('mean', (0., 0., 0.)))
    std = list(pre.get('std', (1., 1., 1.)))
    to_rgb = bool(pre.get('to_rgb', pre.get('bgr_to_rgb', False)))
    return mean, std, to_rgb


def load_images(cfg, folder: str, num: Optional[int] = None,
                size: Optional[Tuple[int, int]] = None,
                paths: Optional[Sequence[str]] = None) -> torch.Tensor:
    """Read images through the test pipeline into one normalised batch.

    Args:
        cfg (Config): The model's config (its test pipeline, preprocessor
            and ``default_scope`` are used).
        folder (str): Folder searched recursively for images.
        num (int, optional): Use this many, evenly spread over the sorted
            file list. Defaults to None (all).
        size (tuple[int, int], optional): (H, W) the exported model takes.
            A pipeline output of another size (e.g. a detector's keep-ratio
            resize) is resized to it bilinearly. Defaults to None (as the
            pipeline gives; then all images must agree).
        paths (Sequence[str], optional): Use these files instead of
            searching ``folder``.

    Returns:
        Tensor: (num, 3, H, W) float32, what the exported graph takes.

    Raises:
        ValueError: No test pipeline in ``cfg``, or no image in ``folder``.
        FileNotFoundError: ``folder`` does not exist.
    """
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    pipeline_cfg = test_pipeline(cfg)
    if paths is None:
        paths = spread(list_images(folder), num)
    mean, std, to_rgb = normalisation(cfg)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    import mmmobilemamba  # noqa: F401  (registers the toolboxes)
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmpretrain')):
        pipeline = Compose(pipeline_cfg)
        batch = []
        for path in paths:
            # annotation-free: what a test pipeline needs to load one image
            data = pipeline(dict(img_path=path, img_id=0, gt_label=-1))
            img = data['inputs']
            if isinstance(img, np.ndarray):
                img = torch.from_numpy(img)
            img = img.float()
            if to_rgb and img.shape[0] == 3:
                img = img.flip(0)
            img = (img - mean_t) / std_t
            if size is not None and tuple(img.shape[-2:]) != tuple(size):
                img = F.interpolate(img[None], size=tuple(size),
                                    mode='bilinear', align_corners=False)[0]
            batch.append(img)
    shapes = {tuple(t.shape) for t in batch}
    if len(shapes) > 1:
        raise ValueError(f'the test pipeline gives images of several sizes '
                         f'{sorted(shapes)}; pass a fixed size')
    return torch.stack(batch)


def folder_labels(paths: Sequence[str], root: str) -> List[int]:
    """Labels of ImageNet-layout files ``root/<class>/<file>``: the index of
    the class folder among the sorted class folders (mmpretrain's order when
    the dataset has no annotation file)."""
    classes = sorted(d for d in os.listdir(root)
                     if osp.isdir(osp.join(root, d)))
    index = {c: i for i, c in enumerate(classes)}
    return [index[osp.relpath(p, root).split(os.sep)[0]] for p in paths]
