"""Install mmmobilemamba.

The OpenMMLab stack is pinned loosely here (the ranges a user needs); the exact
tested versions and the mmcv-from-source build live in tools/install.sh and
requirements/constraints.txt.

The compiled CPU operators (C++ on ATen, no CUDA compiler involved) are built
here with ``torch.utils.cpp_extension``: the selective scan
(``mmmobilemamba.ops._scan_cpu``) and the small-map depthwise convolution
(``mmmobilemamba.ops._dwconv_cpu``). They need torch in the build environment,
hence ``pip install --no-build-isolation -e .``. Without a working C++
compiler (or with ``MMMOBILEMAMBA_NO_EXT=1``) the package installs without
them and pure PyTorch is used; ``import mmmobilemamba`` then says so once.
"""
import os
import re
import sys
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
SCAN_EXT = 'mmmobilemamba.ops._scan_cpu'
DWCONV_EXT = 'mmmobilemamba.ops._dwconv_cpu'


def cpu_extensions():
    """(ext_modules, cmdclass) for the compiled CPU operators, or empty when
    they cannot be built here."""
    if os.environ.get('MMMOBILEMAMBA_NO_EXT') == '1':
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:  # an isolated build without torch
        print('mmmobilemamba: torch is not importable at build time; the '
              'compiled CPU operators are skipped (use pip install '
              '--no-build-isolation)', file=sys.stderr)
        return [], {}

    class OptionalBuildExtension(BuildExtension):
        """A failed compile leaves the pure-PyTorch path, not a failed
        install."""

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as e:  # noqa: BLE001 (compiler missing, ...)
                print(f'mmmobilemamba: building {ext.name} failed ({e}); '
                      'pure PyTorch will be used in its place',
                      file=sys.stderr)

    csrc = Path('mmmobilemamba') / 'ops' / 'csrc'
    # No -march: both sources compile their loops for the baseline, AVX2
    # and AVX-512 and pick one at run time, so a built wheel runs on any
    # x86-64 CPU. -fopenmp: ATen's parallel_for is OpenMP in its headers
    # (it then shares the libgomp torch has loaded, and its thread count).
    # -fno-trapping-math: without it the scan's recurrence loop is scalar
    # in the baseline and AVX2 copies (GCC keeps its exp clamps as
    # branches); the kernels read no floating-point exception flags.
    flags = dict(extra_compile_args=['-O3', '-fopenmp', '-fno-trapping-math',
                                     '-std=c++20'],
                 extra_link_args=['-fopenmp'])
    scan = CppExtension(SCAN_EXT, [str(csrc / 'scan_cpu.cpp')],
                        depends=[str(csrc / 'scan_kernel.h')], **flags)
    dwconv = CppExtension(DWCONV_EXT, [str(csrc / 'depthwise_cpu.cpp')],
                          **flags)
    return [scan, dwconv], {'build_ext': OptionalBuildExtension.with_options(
        use_ninja=True)}


EXT_MODULES, CMDCLASS = cpu_extensions()


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
    ext_modules=EXT_MODULES,
    cmdclass=CMDCLASS,
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
