"""torch's weights-only unpickler with an allowlist that holds for one load.

``torch.serialization.safe_globals`` widens a process-wide set: during a
load every thread accepts the extra globals, and leaving the context removes
them even where the user had registered them too. Here each load gets its
own unpickler whose allowlist is torch's defaults, plus whatever the user
has registered with ``torch.serialization.add_safe_globals`` (read when it
is consulted, never changed), plus the stand-ins given for this load. The
unpickling code is torch's own (``torch._weights_only_unpickler``), run with
a different lookup of the user's globals; nothing global is modified.

Storages are checked against the archive before torch reads them: a record
must hold at least the bytes the pickle claims for it (torch trusts that
number when it wraps the record's memory).
"""
import pickle
import types
from typing import Any, Dict

import torch
import torch._weights_only_unpickler as _wo
import torch.serialization as _ser

from .file_format import CheckpointFile


def _scoped_module(extra: Dict[str, Any], record_sizes: Dict[str, int]):
    """A module-like object for torch's ``_load``/``_legacy_load`` whose
    ``Unpickler`` also accepts ``extra`` ({'module.name': object})."""

    def user_allowed_globals() -> Dict[str, Any]:
        allowed = _wo._get_user_allowed_globals()
        allowed.update(extra)
        return allowed

    namespace = dict(vars(_wo))
    namespace['_get_user_allowed_globals'] = user_allowed_globals
    base_load = _wo.Unpickler.load
    load = types.FunctionType(base_load.__code__, namespace, 'load',
                              base_load.__defaults__, base_load.__closure__)

    class Unpickler(_wo.Unpickler):
        """One load's unpickler (see the module docstring)."""

        @property
        def persistent_load(self):
            return self._persistent_load

        @persistent_load.setter
        def persistent_load(self, function):
            # torch's _load sets this attribute after construction
            self._persistent_load = _checked_storages(function, record_sizes)

    Unpickler.load = load

    def load_one(file, *, encoding: str = 'ASCII'):
        return Unpickler(file, encoding=encoding).load()

    return types.SimpleNamespace(
        __name__=f'{__name__}.scoped', Unpickler=Unpickler, load=load_one,
        UnpicklingError=pickle.UnpicklingError)


def _checked_storages(function, record_sizes: Dict[str, int]):
    """Wrap torch's ``persistent_load``: the storage a pickle names must
    exist and hold at least the bytes the pickle claims for it."""
    if not record_sizes:  # legacy format: sizes are checked by torch
        return function

    def persistent_load(saved_id):
        if (not isinstance(saved_id, tuple) or len(saved_id) != 5
                or saved_id[0] not in ('storage', b'storage')):
            raise pickle.UnpicklingError(
                f'unexpected persistent id {str(saved_id)[:80]}')
        _, storage_type, key, _, numel = saved_id
        if type(numel) is not int or numel < 0 or not isinstance(
                key, (str, bytes)):
            raise pickle.UnpicklingError(
                f'bad storage record {str(saved_id)[:80]}')
        key = key.decode('ascii', 'replace') if isinstance(key, bytes) \
            else key
        if storage_type is torch.UntypedStorage:
            itemsize = 1
        elif isinstance(storage_type, _ser.StorageType):
            itemsize = torch._utils._element_size(storage_type.dtype)
        else:
            raise pickle.UnpicklingError(
                f'storage of unknown type {storage_type!r}')
        have = record_sizes.get(f'data/{key}')
        if have is None:
            raise pickle.UnpicklingError(f'no record data/{key} for a '
                                         'storage the pickle names')
        if numel * itemsize > have:
            raise pickle.UnpicklingError(
                f'storage data/{key} claims {numel * itemsize} bytes, its '
                f'record holds {have}')
        return function(saved_id)

    return persistent_load


def restricted_load(filename: str, found: CheckpointFile, map_location,
                    extra_globals: Dict[str, Any]):
    """``torch.load(filename, weights_only=True)`` with ``extra_globals``
    allowed for this call only.

    Args:
        filename (str): A file :func:`inspect_checkpoint` has looked at.
        found (CheckpointFile): What it found.
        map_location: As for :func:`torch.load`.
        extra_globals (dict): 'module.name' -> the object to use for it.

    Raises:
        pickle.UnpicklingError: The file needs a global outside the
            allowlist, or its pickle is malformed.
    """
    module = _scoped_module(extra_globals, found.record_sizes)
    with open(filename, 'rb') as f:
        if found.kind == 'zip':
            with _ser._open_zipfile_reader(f) as archive:
                return _ser._load(archive, map_location, module,
                                  encoding='utf-8')
        # torch's pre-1.6 format: a stream of pickles
        return _ser._legacy_load(f, map_location, module, encoding='utf-8')
