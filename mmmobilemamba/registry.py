"""The one place that knows the OpenMMLab toolboxes' registries exist.

Model code stays importable with torch + mmengine alone: classes are defined
without decorators and put into each toolbox's ``MODELS`` registry here, for
every toolbox that is installed. A config reaches them with::

    custom_imports = dict(imports=['mmmobilemamba'], allow_failed_imports=False)
"""
import importlib
import importlib.util
import warnings
from typing import Dict, List

# toolbox scope -> 'module:Class' entries registered into its MODELS.
# Entries whose module needs that toolbox are only imported when it is there.
REGISTRATIONS: Dict[str, List[str]] = {
    'mmpretrain': [
        'mmmobilemamba.models.backbones.mobilemamba:MobileMamba',
        'mmmobilemamba.models.heads.bn_linear_head:BNLinearClsHead',
        'mmmobilemamba.models.classifiers.kd_classifier:KDImageClassifier',
        'mmmobilemamba.peft.lora_model:MobileMambaLoRA',
    ],
    'mmdet': [
        'mmmobilemamba.models.necks.deconv_fpn:DeconvFPN',
        'mmmobilemamba.models.backbones.mobilemamba:MobileMamba',
        'mmmobilemamba.peft.lora_model:MobileMambaLoRA',
    ],
    'mmseg': [
        'mmmobilemamba.models.backbones.mobilemamba:MobileMamba',
        'mmmobilemamba.peft.lora_model:MobileMambaLoRA',
    ],
}

# scope -> toolbox registry module
_REGISTRY_MODULES = {
    'mmpretrain': 'mmpretrain.registry',
    'mmdet': 'mmdet.registry',
    'mmseg': 'mmseg.registry',
}


def _load(entry: str):
    module_name, class_name = entry.split(':')
    return getattr(importlib.import_module(module_name), class_name)


def installed_toolboxes() -> List[str]:
    """Scopes of the OpenMMLab toolboxes installed in this environment."""
    return [s for s in REGISTRATIONS if importlib.util.find_spec(s) is not None]


def register_hooks() -> None:
    """Put :class:`~mmmobilemamba.utils.loss_check.FiniteLossHook` into
    mmengine's HOOKS (every toolbox's HOOKS registry falls back to it)."""
    if importlib.util.find_spec('mmengine') is None:
        return
    from mmengine.registry import HOOKS

    from .utils.loss_check import FiniteLossHook
    HOOKS.register_module(module=FiniteLossHook, force=True)


def register_all() -> Dict[str, List[str]]:
    """Register the project's modules in every installed toolbox, and the
    readers that name a broken dataset file
    (:mod:`mmmobilemamba.utils.input_checks`).

    A toolbox that is installed but fails to import is reported with a
    warning naming it and the error (never skipped silently).

    Returns:
        dict: scope -> names registered there.
    """
    done = {}
    register_hooks()
    for scope in installed_toolboxes():
        try:
            registry = importlib.import_module(_REGISTRY_MODULES[scope]).MODELS
        except Exception as err:  # a broken install, e.g. mmcv without ops
            warnings.warn(f'mmmobilemamba: {scope} is installed but cannot be '
                          f'imported ({type(err).__name__}: {err}); its '
                          f'registry gets no MobileMamba modules.')
            continue
        names = []
        for entry in REGISTRATIONS[scope]:
            cls = _load(entry)
            # a wrapper that builds other modules binds this toolbox's scope
            module = cls.for_scope(scope) if hasattr(cls, 'for_scope') \
                else cls
            registry.register_module(module=module, name=cls.__name__,
                                     force=True)
            names.append(cls.__name__)
        from .utils import input_checks
        input_checks.install(scope)
        done[scope] = names
    return done
