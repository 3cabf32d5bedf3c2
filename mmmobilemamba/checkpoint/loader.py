"""Read a checkpoint file without running code from it.

Every checkpoint the package reads goes through :func:`load_checkpoint_file`
(mmengine's local and URL loaders are routed here by
:mod:`mmmobilemamba.compat`). In order:

1. :func:`~.file_format.inspect_checkpoint`: is it a PyTorch checkpoint at
   all, and does its archive stay within the expansion limit?
2. :func:`~.unpickler.restricted_load`: torch's weights-only unpickler,
   allowing for this load only the stand-ins of
   :func:`~.runner_state.stand_ins` (what a stock Runner's message hub
   pickles); storages must fit their records.
3. :func:`~.runner_state.materialize`: the stand-ins checked and turned
   into numpy arrays and HistoryBuffers; the project's plain message hub
   (:func:`~.runner_state.plain_message_hub`) turned back likewise.
4. :func:`~.config_text.neutralize_configs`: config strings that mmengine
   would execute become data-only text.

A file that needs any other global is refused with
:class:`UnsafeCheckpointError` naming the globals, unless the user trusts
it (:mod:`.trust`); then it is unpickled in full, with a warning.
"""
import os
import os.path as osp
import pickle
import tempfile
import warnings
from typing import List, Optional
from urllib.parse import urlparse

import torch

from .config_text import neutralize_configs
from .errors import CorruptCheckpointError, UnsafeCheckpointError
from .file_format import inspect_checkpoint
from .runner_state import (RunnerStateError, is_plain_message_hub,
                           materialize, message_hub_from_plain, stand_ins,
                           tracking, unpickler_globals)
from .trust import OPT_IN, TRUST_ENV, checkpoints_trusted
from .unpickler import restricted_load

# A crafted file can make torch's reader raise almost anything (struct.error,
# UnicodeDecodeError, OverflowError, ...): every exception while reading is
# reported as a damaged file naming it, except a CUDA map_location on a CPU
# machine (see _is_device_error).
_READ_ERRORS = (Exception, )


def allowed_global_names() -> set:
    """The globals (``module.name``) an untrusted file may use beyond
    torch's defaults, each bound to a checked stand-in."""
    return set(stand_ins())


def _disallowed(filename: str, error: Exception) -> Optional[List[str]]:
    """The globals a valid file needs beyond the allowlist; None when the
    refusal was of something else (a malformed or crafted pickle)."""
    text = str(error)
    if 'GLOBAL ' not in text:
        return None
    names = [text.split('GLOBAL ', 1)[1].split()[0]]
    try:  # every one of them, read from the opcodes (nothing is built)
        listed = torch.serialization.get_unsafe_globals_in_checkpoint(
            filename)
        allowed = allowed_global_names()
        names = [n for n in listed if n not in allowed] or names
    except Exception:  # noqa: BLE001  (legacy format: the first one)
        pass
    return names


def _is_device_error(error: Exception) -> bool:
    return isinstance(error, RuntimeError) and (
        'deserialize object on' in str(error)
        or 'map_location' in str(error))


def _size(filename: str) -> str:
    try:
        return f'{os.path.getsize(filename)} bytes'
    except OSError:
        return 'size unknown'


def _corrupt(filename: str, err: Exception) -> CorruptCheckpointError:
    reason = str(err).strip().split('\n')[0][:300] or type(err).__name__
    return CorruptCheckpointError(
        f'cannot read checkpoint {filename} ({_size(filename)}): '
        f'{type(err).__name__}: {reason}. The file is truncated, damaged or '
        'crafted: download or save it again; to resume training, pass an '
        'earlier checkpoint of the work dir to --resume.')


def load_checkpoint_file(filename: str,
                         map_location=None,
                         expansion_limit: Optional[float] = None):
    """Load a local checkpoint file without running code from it.

    Args:
        filename (str): Path of the file.
        map_location: As for :func:`torch.load`. Defaults to None.
        expansion_limit (float, optional): Largest archive expansion, see
            :func:`~mmmobilemamba.checkpoint.file_format.max_expansion`.

    Returns:
        The loaded object (usually a dict).

    Raises:
        FileNotFoundError: No such file.
        UnsafeCheckpointError: The file needs globals outside the allowlist
            and checkpoints are not trusted.
        CorruptCheckpointError: Not a checkpoint, truncated, damaged, or
            data a Runner does not write.
        CheckpointLimitError: Beyond the expansion limit.
    """
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found.')
    found = inspect_checkpoint(filename, expansion_limit)
    trusted = checkpoints_trusted()
    try:
        with tracking() as created:
            checkpoint = materialize(
                restricted_load(filename, found, map_location,
                                unpickler_globals()), created)
        if isinstance(checkpoint, dict) and is_plain_message_hub(
                checkpoint.get('message_hub')):
            checkpoint['message_hub'] = message_hub_from_plain(
                checkpoint['message_hub'])
    except pickle.UnpicklingError as err:
        names = _disallowed(filename, err)
        if names is None:
            raise _corrupt(filename, err) from None
        if not trusted:
            raise UnsafeCheckpointError(
                f'refusing to load checkpoint {filename}: it holds Python '
                f'objects beyond weights and the types an mmengine Runner '
                f'writes, and unpickling them can run arbitrary code. '
                f'Disallowed global(s): {", ".join(names)}. If you trust this '
                f'file (you made it or know its source), {OPT_IN}; to allow '
                'just these types, register them with '
                'torch.serialization.add_safe_globals([...]).') from None
        return _load_trusted(filename, map_location, ', '.join(names))
    except RunnerStateError as err:
        raise CorruptCheckpointError(
            f'refusing checkpoint {filename}: its message hub is not what an '
            f'mmengine Runner writes ({err}).') from None
    except _READ_ERRORS as err:
        if _is_device_error(err):
            raise
        raise _corrupt(filename, err) from None
    if not trusted:
        neutralize_configs(checkpoint, filename)
    return checkpoint


def _load_trusted(filename: str, map_location, name: str):
    warnings.warn(f'{filename}: trusted checkpoint ({TRUST_ENV}=1 or '
                  f'--trust-checkpoint) unpickled in full; it needs {name}')
    _log_warning(f'unpickling trusted checkpoint {filename} in full '
                 f'(needs {name})')
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=False)
    except _READ_ERRORS as err:
        if _is_device_error(err):
            raise
        raise _corrupt(filename, err) from None


def _log_warning(message: str) -> None:
    try:
        from mmengine.logging import print_log
        print_log(message, logger='current', level=30)
    except ImportError:  # pragma: no cover
        pass


def load_checkpoint_from_url(url: str,
                             model_dir: Optional[str] = None,
                             map_location=None,
                             progress: bool = True,
                             **kwargs):
    """Download ``url`` once into the torch hub cache and load it with
    :func:`load_checkpoint_file`.

    Takes the arguments of mmengine's ``load_url``, which
    :mod:`mmmobilemamba.compat` replaces with it (that one unpickles in
    full).
    """
    from torch.hub import download_url_to_file, get_dir
    model_dir = model_dir or osp.join(get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, osp.basename(urlparse(url).path))
    if not osp.exists(cached):
        # downloads to a temporary file and renames it when complete
        download_url_to_file(url, cached, None, progress=progress)
    return load_checkpoint_file(cached, map_location=map_location)


def save_checkpoint_file(obj, filename: str) -> None:
    """``torch.save`` to a temporary file, then rename it to ``filename``:
    an interrupted save never leaves a truncated file under that name."""
    directory = osp.dirname(osp.abspath(filename))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(filename)}.',
                               suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
        os.replace(tmp, filename)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
