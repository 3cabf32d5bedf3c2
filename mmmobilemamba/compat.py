"""Known breakages of the pinned OpenMMLab stack under torch 2.13, each fixed
through a public extension point (never by editing site-packages).

1. Checkpoint loading (torch >= 2.6 defaults ``torch.load`` to
   ``weights_only=True``; mmengine 0.10.7 calls it without the argument).
   Plain state_dicts load either way, but checkpoints written by mmengine's
   Runner hold a message hub (``HistoryBuffer``, numpy arrays) and fail, so
   ``--resume`` and ``tools/test.py`` break. We re-register mmengine's loader
   for local paths: it tries the safe ``weights_only=True`` load first and
   falls back to full unpickling for files that hold Python objects.
   **Trust caveat**: unpickling can run arbitrary code. Only pass checkpoints
   you produced yourself or got from a source you trust.

2. mmdet 3.3.0's ``SSDHead`` never builds ``loss_cls`` (it computes its loss
   with ``F.cross_entropy``), yet ``predict_by_feat`` reads
   ``self.loss_cls``: SSD/SSDLite inference raises ``AttributeError``.
   Declaring ``loss_cls = None`` on the class makes that read return None.

Each fix is applied once, when :mod:`mmmobilemamba` is imported, and only if
the package it fixes is installed.
"""
import importlib.util
import os.path as osp
import pickle

import torch

_APPLIED = set()


def load_local_checkpoint(filename: str, map_location=None):
    """Load a local checkpoint: safely if it is plain tensors, else unpickle.

    Args:
        filename (str): Path of the checkpoint file.
        map_location: Same as :func:`torch.load`. Defaults to None.

    Returns:
        dict: The loaded checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found.')
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=True)
    except pickle.UnpicklingError:
        # A Runner checkpoint (message hub, numpy state): see the trust
        # caveat in the module docstring.
        return torch.load(filename, map_location=map_location,
                          weights_only=False)


def patch_checkpoint_loading() -> None:
    """Route mmengine's local-path checkpoint loading through
    :func:`load_local_checkpoint`."""
    if 'checkpoint' in _APPLIED:
        return
    from mmengine.runner import CheckpointLoader
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)
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
