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
   ``MMMOBILEMAMBA_TRUST_CHECKPOINTS=1``).

2. mmdet 3.3.0's ``SSDHead`` never builds ``loss_cls`` (it computes its loss
   with ``F.cross_entropy``), yet ``predict_by_feat`` reads
   ``self.loss_cls``: SSD/SSDLite inference raises ``AttributeError``.
   Declaring ``loss_cls = None`` on the class makes that read return None.

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
