"""MobileMamba for OpenMMLab (mmpretrain, mmdet, mmsegmentation).

Importing the package applies the stack's compatibility fixes
(:mod:`mmmobilemamba.compat`) and registers the project's modules in the
MODELS registry of every installed toolbox (:mod:`mmmobilemamba.registry`),
and the training machinery of :mod:`mmmobilemamba.engine` in mmengine's.
Configs reach it with::

    custom_imports = dict(imports=['mmmobilemamba'], allow_failed_imports=False)

``mmmobilemamba.ops`` needs only torch, and ``mmmobilemamba.models`` torch and
mmengine, so the GPU path can be checked without the OpenMMLab toolboxes.
"""
import importlib.util

from . import compat
from .registry import register_all
from .version import __version__

if importlib.util.find_spec('mmengine') is not None:
    from . import engine  # noqa: F401  (hooks, loops, EMA in mmengine)
compat.apply_all()
#: scope -> names of the modules registered there at import.
REGISTERED = register_all()

__all__ = ['__version__', 'REGISTERED']
