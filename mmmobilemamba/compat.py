"""Known breakages of the pinned OpenMMLab stack under torch 2.13, each fixed
from outside the library (an extension point or a module attribute; never by
editing site-packages).

1. Checkpoint loading (torch >= 2.6 defaults ``torch.load`` to
   ``weights_only=True``; mmengine 0.10.7 calls it without the argument for
   local files, and with ``weights_only=False`` for URLs through
   ``torch.hub``). Runner checkpoints hold a message hub (``HistoryBuffer``,
   numpy arrays), so ``--resume`` and ``tools/test.py`` would fail, while a
   downloaded file would be unpickled in full. mmengine's loader for local
   paths is re-registered, and the ``load_url`` its URL loaders call is
   replaced, both by :mod:`mmmobilemamba.checkpoint`'s safe loader: weights
   plus exactly the types a Runner writes, anything else refused unless the
   user opts in (``--trust-checkpoint`` or
   ``MMMOBILEMAMBA_TRUST_CHECKPOINTS=1``). That loader also rewrites the
   config text mmengine would execute from an untrusted checkpoint (on
   resume and in every inferencer given weights without a config) into
   data-only text (:mod:`mmmobilemamba.checkpoint.config_text`).

2. mmdet 3.3.0's ``SSDHead`` never builds ``loss_cls`` (it computes its loss
   with ``F.cross_entropy``), yet ``predict_by_feat`` reads
   ``self.loss_cls``: SSD/SSDLite inference raises ``AttributeError``.
   Declaring ``loss_cls = None`` on the class makes that read return None.

3. mmpretrain 1.2.0's ``ImageClassificationInferencer`` reads images with
   its module's ``imread`` and answers an empty or undecodable file with a
   bare OpenCV assertion, and decodes images of any declared size. The
   module attribute is replaced by
   :func:`mmmobilemamba.utils.input_checks.checked_imread`, which names the
   file and applies the pixel limit. (mmdet's and mmseg's inferencers read
   through ``LoadImageFromFile``, which :mod:`.utils.input_checks` replaces
   with a checked one.)

Each fix is applied once, when :mod:`mmmobilemamba` is imported, and only if
the package it fixes is installed.
"""
import importlib.util

_APPLIED = set()


def load_local_checkpoint(filename: str, map_location=None):
    """mmengine's loader for local paths: the safe loader (see
    :func:`mmmobilemamba.checkpoint.load_checkpoint_file`)."""
    from .checkpoint import load_checkpoint_file
    return load_checkpoint_file(filename, map_location=map_location)


def patch_checkpoint_loading() -> None:
    """Route mmengine's local-path and URL checkpoint loading through
    :mod:`mmmobilemamba.checkpoint`."""
    if 'checkpoint' in _APPLIED:
        return
    import mmengine.runner.checkpoint as mmengine_checkpoint
    from mmengine.runner import CheckpointLoader

    from .checkpoint import load_checkpoint_from_url
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)
    # http(s)://, torchvision://, open-mmlab://, mmcls:// all download
    # through this module-level name.
    mmengine_checkpoint.load_url = load_checkpoint_from_url
    _APPLIED.add('checkpoint')


def patch_ssd_head() -> None:
    """Give mmdet's ``SSDHead`` the ``loss_cls`` attribute inference reads."""
    if 'ssd_head' in _APPLIED:
        return
    from mmdet.models.dense_heads import SSDHead
    if not hasattr(SSDHead, 'loss_cls'):
        SSDHead.loss_cls = None
    _APPLIED.add('ssd_head')


def patch_classification_inferencer() -> None:
    """mmpretrain's inferencer reads images with the checked ``imread``."""
    if 'cls_inferencer' in _APPLIED:
        return
    import mmpretrain.apis.image_classification as image_classification

    from .utils.input_checks import checked_imread
    image_classification.imread = checked_imread
    _APPLIED.add('cls_inferencer')


def apply_all() -> None:
    """Apply every fix whose target package is installed."""
    if importlib.util.find_spec('mmengine') is not None:
        patch_checkpoint_loading()
    if importlib.util.find_spec('mmdet') is not None:
        try:
            patch_ssd_head()
        except Exception:  # noqa: BLE001
            # mmdet is installed but cannot be imported (e.g. an mmcv without
            # compiled ops); registry.register_all() warns with the error.
            pass
    if importlib.util.find_spec('mmpretrain') is not None:
        try:
            patch_classification_inferencer()
        except Exception:  # noqa: BLE001  (as for mmdet above)
            pass
