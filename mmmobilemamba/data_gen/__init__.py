"""Generators of small datasets in the real on-disk formats (ImageNet
folders, COCO json, ADE20K folders), and the ``--cfg-options`` that point a
config at them, so the configs run unchanged on data made here.

These are not Dataset classes: the toolboxes' own ``CustomDataset``,
``CocoDataset`` and ``ADE20KDataset`` read what they write.
"""
from .ade20k import SCENE_CLASSES as ADE20K_SCENE_CLASSES
from .ade20k import ade20k_cfg_options, make_ade20k
from .coco import COCO_SHAPE_CATEGORIES, make_coco
from .imagenet_folder import (DIGIT_CLASSES, SHAPE_CLASSES,
                              make_imagenet_folder)

__all__ = [
    'make_imagenet_folder', 'SHAPE_CLASSES', 'DIGIT_CLASSES', 'make_coco',
    'COCO_SHAPE_CATEGORIES', 'make_ade20k', 'ADE20K_SCENE_CLASSES',
    'ade20k_cfg_options'
]
