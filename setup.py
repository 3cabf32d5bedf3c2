"""Install mmmobilemamba.

The OpenMMLab stack is pinned loosely here (the ranges a user needs); the exact
tested versions and the mmcv-from-source build live in tools/install.sh and
requirements/constraints.txt.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_version() -> str:
    text = (HERE / 'mmmobilemamba' / 'version.py').read_text()
    return re.search(r"__version__ = '([^']+)'", text).group(1)


setup(
    name='mmmobilemamba',
    version=read_version(),
    description='MobileMamba (arXiv 2411.15941) backbone for OpenMMLab '
    'classification, detection and segmentation',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['mmmobilemamba', 'mmmobilemamba.*']),
    install_requires=[
        'torch>=2.1',
        'mmengine>=0.10.0,<1.0',
        'PyWavelets>=1.4',
        'numpy',
    ],
    extras_require={
        # mmcv 2.1.0 has no binary wheel for recent torch: build it from
        # source (see tools/install.sh).
        'mmpretrain': ['mmpretrain>=1.2.0,<1.3', 'mmcv>=2.0.0,<2.4.0'],
        'mmdet': ['mmdet>=3.3.0,<3.4', 'mmcv>=2.0.0,<2.2.0', 'pycocotools'],
        'mmseg': ['mmsegmentation>=1.2.2,<1.3', 'mmcv>=2.0.0,<2.2.0',
                  'ftfy', 'regex'],
        'triton': ['triton>=3.0'],
        'onnx': ['onnx', 'onnxscript', 'onnxruntime'],
        'executorch': ['executorch>=1.5,<1.6', 'torchao>=0.18,<0.19'],
        'tests': ['pytest'],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
