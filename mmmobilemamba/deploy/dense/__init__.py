"""Whole models for deployment: the post-processing of detectors and
segmentors in the exported file, and the metadata file beside it.

:func:`deployable` picks, by the model's task, the module that
:func:`mmmobilemamba.deploy.export` traces:

================  =======================  ================================
task              module                   outputs (``output_format``)
================  =======================  ================================
classification    ``Logits``               ``logits`` (N, C) (``logits``)
segmentation      :class:`SegmentorLabels`  ``labels`` (N, H, W) int64
                                           (``label_map``)
detection, onnx   :class:`DetectorNMS`     ``dets`` (N, 5), ``labels`` (N,)
                                           (``dets_labels``), batch 1
detection,        :class:`DetectorDense`   ``boxes`` (1, A, 4), ``scores``
xnnpack                                    (1, A, C) (``boxes_scores``);
                                           the host runs the top-k and NMS
                                           (``deploy/host.py``)
two-stage, onnx   :class:`MaskRCNNExport`  ``dets``, ``labels``, ``masks``
                                           (N, H, W) bool
                                           (``dets_labels_masks``), batch 1
================  =======================  ================================

Two-stage detectors have no ``.pte`` path (ExecuTorch has no RoIAlign or
NMS kernel); that, and every head without an export path, is a
``NotImplementedError`` naming the head.

:func:`write_metadata` writes ``MODEL.json`` (what ``deploy/host.py``
reads: input size, normalisation, keep-ratio, class names, output format,
the NMS settings of a ``.pte`` detector).
"""
import json
import os.path as osp
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch.nn as nn

from .detector import (DetectorDense, DetectorNMS, check_dense_detector,
                       nms_settings)
from .segmentor import SegmentorLabels
from .two_stage import MaskRCNNExport, check_two_stage

__all__ = ['Deployable', 'DetectorDense', 'DetectorNMS', 'MaskRCNNExport',
           'SegmentorLabels',
           'check_dense_detector', 'deployable', 'nms_settings', 'task_of',
           'write_metadata', 'default_size', 'size_divisor']


def task_of(model: nn.Module) -> str:
    """'detection', 'segmentation' or 'classification'."""
    try:
        from mmseg.models.segmentors import BaseSegmentor
        if isinstance(model, BaseSegmentor):
            return 'segmentation'
    except ImportError:
        pass
    try:
        from mmdet.models.detectors import BaseDetector
        if isinstance(model, BaseDetector):
            return 'detection'
    except ImportError:
        pass
    return 'classification'


@dataclass
class Deployable:
    """The module to export and how to read it.

    Args:
        module (nn.Module): Takes the normalised image.
        task (str): See :func:`task_of`.
        output_names (list[str]): In order.
        output_format (str): See ``deploy/host.py``.
        postprocess (dict): Host post-processing settings (``.pte``
            detectors: NMS settings and anchors per level).
    """
    module: nn.Module
    task: str
    output_names: List[str]
    output_format: str
    postprocess: dict = field(default_factory=dict)


def deployable(model: nn.Module, target: str, size: Sequence[int]
               ) -> Deployable:
    """The whole ``model`` (eval mode) as one module for ``target``.

    Raises:
        NotImplementedError: A head with no export path (names the head).
    """
    from ..model_source import Logits
    task = task_of(model)
    if task == 'segmentation':
        return Deployable(SegmentorLabels(model, size), task, ['labels'],
                          'label_map')
    if task == 'detection' and getattr(model, 'roi_head', None) is not None:
        check_two_stage(model)
        if target != 'onnx':
            heads = f'{type(model.rpn_head).__name__}, ' \
                f'{type(model.roi_head).__name__}'
            raise NotImplementedError(
                f'{type(model).__name__} ({heads}): no {target} export path '
                'for the RPN and RoI heads (ExecuTorch has no NMS or RoIAlign '
                'kernel); export to ONNX (--target onnx), or the backbone '
                'with --features')
        module = MaskRCNNExport(model, size)
        if module.with_mask:
            return Deployable(module, task, ['dets', 'labels', 'masks'],
                              'dets_labels_masks',
                              dict(module.rcnn_cfg, rpn=module.rpn_cfg))
        return Deployable(module, task, ['dets', 'labels'], 'dets_labels',
                          dict(module.rcnn_cfg, rpn=module.rpn_cfg))
    if task == 'detection':
        settings = nms_settings(model)  # also checks the head
        dense = DetectorDense(model, size)
        if target == 'onnx':
            return Deployable(DetectorNMS(dense, **settings), task,
                              ['dets', 'labels'], 'dets_labels', settings)
        return Deployable(dense, task, ['boxes', 'scores'], 'boxes_scores',
                          dict(settings, levels=list(dense.levels)))
    return Deployable(Logits(model).eval(), task, ['logits'], 'logits')


def size_divisor(cfg) -> int:
    """The padding divisor of the config's data preprocessor (1 if none)."""
    pre = cfg.model.get('data_preprocessor') or cfg.get(
        'data_preprocessor') or {}
    test_cfg = pre.get('test_cfg') or {}
    return int(test_cfg.get('size_divisor') or pre.get('pad_size_divisor')
               or pre.get('size_divisor') or 1)


def _resize_step(cfg) -> Optional[dict]:
    from ..calibration import test_pipeline
    for step in test_pipeline(cfg):
        kind = str(step.get('type', '')).split('.')[-1]
        if kind in ('Resize', 'RandomResize') and step.get('scale'):
            return dict(step)
    return None


def keep_ratio(cfg) -> bool:
    """Whether the test pipeline resizes keeping the aspect ratio."""
    step = _resize_step(cfg)
    return bool(step and step.get('keep_ratio', False))


def default_size(cfg) -> Optional[Tuple[int, int]]:
    """(H, W) of a dense model's test pipeline: its ``Resize`` scale
    (mmcv's (W, H) order; with keep-ratio a landscape canvas of the short
    and long side), rounded up to the preprocessor's divisor. None when the
    pipeline has no such resize."""
    step = _resize_step(cfg)
    if step is None:
        return None
    scale = step['scale']
    scale = (scale, scale) if isinstance(scale, int) else tuple(scale)
    w, h = int(scale[0]), int(scale[-1])
    if step.get('keep_ratio', False):
        h, w = min(h, w), max(h, w)
    div = size_divisor(cfg)
    return (-(-h // div) * div, -(-w // div) * div)


def class_names(cfg, model: Optional[nn.Module] = None
                ) -> Tuple[List[str], Optional[list]]:
    """(class names, palette or None): the model's ``dataset_meta``, else
    the test dataset's ``metainfo``, else its class's ``METAINFO``."""
    meta = dict(getattr(model, 'dataset_meta', None) or {})
    if not meta.get('classes'):
        loader = cfg.get('test_dataloader') or cfg.get('val_dataloader') or {}
        dataset = dict(loader.get('dataset') or {})
        while 'dataset' in dataset and 'type' in dataset and \
                'metainfo' not in dataset and isinstance(
                    dataset['dataset'], dict):
            dataset = dict(dataset['dataset'])
        meta = dict(dataset.get('metainfo') or {})
        if not meta.get('classes') and dataset.get('type'):
            try:
                import importlib
                scope = cfg.get('default_scope', 'mmpretrain')
                registry = importlib.import_module(
                    f'{scope}.registry').DATASETS
                cls = registry.get(dataset['type'])
                meta = dict(getattr(cls, 'METAINFO', {}) or {})
            except Exception:  # noqa: BLE001 (names are optional)
                meta = {}
    classes = [str(c) for c in meta.get('classes') or []]
    palette = meta.get('palette')
    palette = [list(map(int, p)) for p in palette] if palette else None
    return classes, palette


def write_metadata(path: str, cfg, model: nn.Module, dep: Deployable,
                   size: Sequence[int], batch: int = 1,
                   precision: str = 'fp32', extra: Optional[dict] = None
                   ) -> str:
    """Write ``path + '.json'`` for the model file ``path``; returns its
    path. See ``deploy/host.py`` for the fields."""
    from ..calibration import normalisation
    from ..host import METADATA_FORMAT, metadata_path
    mean, std, to_rgb = normalisation(cfg)
    classes, palette = class_names(cfg, model)
    meta = dict(
        format=METADATA_FORMAT,
        task=dep.task,
        model_file=osp.basename(path),
        runtime='onnxruntime' if path.endswith('.onnx') else 'executorch',
        precision=precision,
        input=dict(name='input', shape=[int(batch), 3, int(size[0]),
                                        int(size[1])],
                   dtype='float32', layout='NCHW'),
        preprocess=dict(to_rgb=bool(to_rgb), mean=[float(m) for m in mean],
                        std=[float(s) for s in std],
                        keep_ratio=keep_ratio(cfg) if dep.task != 'classification'
                        else False,
                        pad_value=0.0, size_divisor=size_divisor(cfg)),
        classes=classes,
        output_format=dep.output_format,
        outputs=dep.output_names,
        postprocess=dep.postprocess,
        config=getattr(cfg, 'filename', None),
    )
    if palette:
        meta['palette'] = palette
    meta.update(extra or {})
    out = metadata_path(path)
    with open(out, 'w') as f:
        json.dump(meta, f, indent=1)
    return out
