"""Read checkpoint files safely; load their weights with a key report.

Every checkpoint the package reads goes through :func:`load_checkpoint_file`:
mmengine's loaders (``load_from``, ``--resume``, ``init_cfg=dict(type=
'Pretrained')``, URLs) are routed to it by :mod:`mmmobilemamba.compat`, and
the converter and the tools call it directly.

Loading never unpickles arbitrary objects. ``torch.load`` runs with
``weights_only=True`` and torch's allowlist extended by
:data:`RUNNER_SAFE_GLOBALS`: exactly the types mmengine's Runner writes into
its checkpoints. A file that needs any other global is refused with
:class:`UnsafeCheckpointError`, which names the file and the globals. A user
who trusts such a file opts in with ``--trust-checkpoint`` on the tools, or
with the environment variable ``MMMOBILEMAMBA_TRUST_CHECKPOINTS=1`` (read at
every load) from Python; the unrestricted load is then logged as a warning.

The second half is "put a state dict into a module and say which keys did
not match" (:func:`load_state_dict`, :func:`load_checkpoint`,
:func:`check_checkpoint_matches`), with the hints for the usual mistakes
(release layout, missing prefix, BN-fused vs unfused weights) in one place.
"""
import contextlib
import os
import os.path as osp
import pickle
import re
import tempfile
import warnings
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional
from urllib.parse import urlparse

import torch

#: Set to 1 to load checkpoints that need more than the safe allowlist.
TRUST_ENV = 'MMMOBILEMAMBA_TRUST_CHECKPOINTS'
_TRUE = ('1', 'true', 'yes', 'on')

_OPT_IN = (f'pass --trust-checkpoint to the tool, or set {TRUST_ENV}=1 in '
           'the environment (Python API)')


_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_method(owner, name: str):
    """Stands in for ``getattr`` while unpickling: a pickled HistoryBuffer
    names its statistics methods (min, max, current, mean) as
    ``getattr(HistoryBuffer, 'min')``; nothing else may be looked up."""
    from mmengine.logging import HistoryBuffer
    if owner is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not allowed in a checkpoint')


def _runner_safe_globals() -> list:
    """The globals mmengine's Runner writes into a checkpoint, beyond what
    ``weights_only=True`` accepts by default (tensors, dict/OrderedDict,
    list, tuple, set, str, bytes, int, float, bool, None).

    Found with ``torch.serialization.get_unsafe_globals_in_checkpoint`` on
    Runner checkpoints of this project's classification, detection and
    segmentation configs; ``tests/test_checkpoint.py`` keeps checking that
    nothing else is needed. All of them come from ``message_hub``: the meta,
    state_dict, optimizer and param_schedulers entries need none. Add an
    entry here, saying where it comes from, when a Runner component starts
    writing a new type.
    """
    try:
        from numpy._core import multiarray  # numpy >= 2
        old_module = 'numpy.core.multiarray'
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
        old_module = 'numpy._core.multiarray'
    import numpy as np
    from mmengine.logging import HistoryBuffer

    return [
        # message_hub.log_scalars: one HistoryBuffer per logged scalar (loss
        # terms, lr, time, data_time, metrics) ...
        HistoryBuffer,
        # ... whose statistics_methods dict pickles its functions as
        # getattr(HistoryBuffer, 'min'): a getattr limited to exactly that.
        (_history_buffer_method, 'builtins.getattr'),
        # ... and whose histories are numpy arrays: an ndarray pickles as
        # _reconstruct(ndarray, ...) plus its dtype, and the dtype is rebuilt
        # as an instance of its class: float64 values, int64 counts.
        multiarray._reconstruct,
        np.ndarray,
        np.dtype,
        type(np.dtype(np.float64)),
        type(np.dtype(np.int64)),
        # message_hub.runtime_info: numpy scalars (e.g. 'eta', metric
        # values) pickle as scalar(dtype, bytes).
        multiarray.scalar,
        # The same two functions under the module name numpy uses in files
        # written by the other numpy major version (1.x: numpy.core).
        (multiarray._reconstruct, f'{old_module}._reconstruct'),
        (multiarray.scalar, f'{old_module}.scalar'),
    ]


#: Built on first use (it imports numpy and mmengine); see
#: :func:`_runner_safe_globals` for where each type comes from.
RUNNER_SAFE_GLOBALS: List = []


def runner_safe_globals() -> list:
    """:data:`RUNNER_SAFE_GLOBALS`, built on first use."""
    if not RUNNER_SAFE_GLOBALS:
        RUNNER_SAFE_GLOBALS.extend(_runner_safe_globals())
    return RUNNER_SAFE_GLOBALS


class CheckpointError(RuntimeError):
    """A checkpoint file could not be loaded (the message says why)."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds objects that loading without trust may not create."""


class CorruptCheckpointError(CheckpointError):
    """The file is truncated, damaged or not a checkpoint."""


def checkpoints_trusted() -> bool:
    """Whether ``MMMOBILEMAMBA_TRUST_CHECKPOINTS`` allows unpickling."""
    return os.environ.get(TRUST_ENV, '').strip().lower() in _TRUE


@contextlib.contextmanager
def trust_checkpoints(enabled: bool = True) -> Iterator[None]:
    """Trust every checkpoint loaded inside the block (if ``enabled``).

    Sets :data:`TRUST_ENV` for the block, so dataloader workers and child
    processes see it too; with ``enabled=False`` the environment is left as
    it is.
    """
    if not enabled:
        yield
        return
    old = os.environ.get(TRUST_ENV)
    os.environ[TRUST_ENV] = '1'
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(TRUST_ENV, None)
        else:
            os.environ[TRUST_ENV] = old


def add_trust_argument(parser) -> None:
    """Add ``--trust-checkpoint`` to a tool's argument parser."""
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='load checkpoints that hold arbitrary Python objects (full '
        'unpickling, which can run code from the file); only for files you '
        f'made or trust. Same as {TRUST_ENV}=1')


def allowed_global_names() -> set:
    """The names (``module.qualname``) of :func:`runner_safe_globals`."""
    return {entry[1] if isinstance(entry, tuple) else
            f'{entry.__module__}.{entry.__qualname__}'
            for entry in runner_safe_globals()}


def _disallowed_globals(filename: str, error: Exception) -> List[str]:
    allowed = allowed_global_names()
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
        names = [n for n in names if n not in allowed]
    except Exception:  # noqa: BLE001  (legacy format: read the message)
        names = []
    if not names:
        names = re.findall(r'GLOBAL (\S+) was not an allowed', str(error))
    if not names:  # an object of a class the safe unpickler cannot build
        names = re.findall(r"but got <class '([^']+)'>", str(error))
    if not names:  # e.g. a call or opcode the safe unpickler refuses
        match = re.search(r'WeightsUnpickler error:\s*([^\n]+)', str(error))
        names = [match.group(1).strip() if match else '(not named)']
    return names


def _describe_size(filename: str) -> str:
    try:
        return f'{os.path.getsize(filename)} bytes'
    except OSError:
        return 'size unknown'


def load_checkpoint_file(filename: str, map_location=None):
    """Load a local checkpoint file without running code from it.

    Args:
        filename (str): Path of the file.
        map_location: As for :func:`torch.load`. Defaults to None.

    Returns:
        The loaded object (usually a dict).

    Raises:
        FileNotFoundError: No such file.
        UnsafeCheckpointError: The file needs globals outside the allowlist
            and checkpoints are not trusted.
        CorruptCheckpointError: The file is truncated or not a checkpoint.
    """
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found.')
    try:
        with torch.serialization.safe_globals(runner_safe_globals()):
            return torch.load(filename, map_location=map_location,
                              weights_only=True)
    except pickle.UnpicklingError as err:
        if 'Weights only load failed' not in str(err):
            raise _corrupt(filename, err) from None
        names = _disallowed_globals(filename, err)
        if not checkpoints_trusted():
            raise UnsafeCheckpointError(
                f'refusing to load checkpoint {filename}: it holds Python '
                f'objects beyond weights and the types an mmengine Runner '
                f'writes, and unpickling them can run arbitrary code. '
                f'Disallowed global(s): {", ".join(names)}. If you trust '
                f'this file (you made it or know its source), {_OPT_IN}; '
                'to allow just these types, register them with '
                'torch.serialization.add_safe_globals([...]).') from None
    except _READ_ERRORS as err:
        _raise_if_corrupt(filename, err)
        raise
    warnings.warn(f'{filename}: trusted checkpoint ({TRUST_ENV}=1 or '
                  f'--trust-checkpoint) unpickled in full; it needs '
                  f'{", ".join(names)}')
    _log_warning(f'unpickling trusted checkpoint {filename} in full '
                 f'(needs {", ".join(names)})')
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=False)
    except _READ_ERRORS + (pickle.UnpicklingError, ) as err:
        _raise_if_corrupt(filename, err)
        raise


_READ_ERRORS = (RuntimeError, EOFError, OSError, ValueError, KeyError,
                IndexError, AttributeError, TypeError)
# RuntimeError/OSError texts of a damaged file (others, e.g. a CUDA
# map_location on a CPU machine, pass through unchanged).
_DAMAGED = re.compile(r'PytorchStreamReader|zip archive|central directory|'
                      r'unexpected EOF|corrupt|file is too short|'
                      r'invalid load key|magic number|Invalid argument',
                      re.IGNORECASE)


def _raise_if_corrupt(filename: str, err: Exception) -> None:
    if isinstance(err, (RuntimeError, OSError)) and not _DAMAGED.search(
            str(err)):
        return
    raise _corrupt(filename, err) from None


def _corrupt(filename: str, err: Exception) -> CorruptCheckpointError:
    reason = str(err).split('. ')[0] or type(err).__name__
    return CorruptCheckpointError(
        f'cannot read checkpoint {filename} ({_describe_size(filename)}): '
        f'{type(err).__name__}: {reason}. The file is truncated, damaged or '
        'not a PyTorch checkpoint (an interrupted download, copy or save). '
        'Download or save it again; to resume training, pass an earlier '
        'checkpoint of the work dir to --resume.')


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


# ----------------------------------------------------------------------
# Weights into a module, with a key report
# ----------------------------------------------------------------------
class LoadReport(NamedTuple):
    """Keys of a checkpoint that did not match the module."""
    missing_keys: List[str]
    unexpected_keys: List[str]


def state_dict_of(checkpoint, source: str = 'checkpoint'
                  ) -> Dict[str, torch.Tensor]:
    """The weights in a loaded checkpoint: its 'state_dict' (or 'model')
    entry, or the dict itself; a 'module.' prefix on every key is removed.
    """
    state = checkpoint
    if isinstance(checkpoint, dict):
        for key in ('state_dict', 'model'):
            if isinstance(checkpoint.get(key), dict):
                state = checkpoint[key]
                break
    if not isinstance(state, dict):
        raise ValueError(f'{source} holds no state_dict (got '
                         f'{type(state).__name__})')
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return state


def _is_deploy(module: torch.nn.Module) -> bool:
    return any(getattr(m, 'deploy', False) is True for m in module.modules())


def fusion_hint(module: torch.nn.Module, unexpected: List[str]) -> str:
    """Advice when the weights and the module differ in BN fusion."""
    if _is_deploy(module) and any('.bn.' in k for k in unexpected):
        return (' The weights are unfused but the model was built with '
                'deploy=True; build it with deploy=False.')
    if not _is_deploy(module) and any(k.endswith('conv.bias')
                                      for k in unexpected):
        return (' The weights look BN-fused; build the model with '
                'deploy=True (config: model.backbone.deploy=True, and '
                'model.head.deploy=True for a BNLinearClsHead).')
    return ''


def _layout_hint(state_dict: Dict[str, torch.Tensor]) -> str:
    if any(k.startswith(('patch_embed.', 'blocks1.')) for k in state_dict):
        return (' It is in the released MobileMamba layout: convert it first '
                'with tools/model_converters/mobilemamba_to_mmpretrain.py '
                '(mmmobilemamba.convert).')
    if any(k.startswith('backbone.') for k in state_dict):
        return " Its keys start with 'backbone.': pass that prefix."
    return ''


def compare_keys(module: torch.nn.Module,
                 state_dict: Dict[str, torch.Tensor]) -> LoadReport:
    """Missing and unexpected keys of ``state_dict`` for ``module``."""
    expected, given = set(module.state_dict()), set(state_dict)
    return LoadReport(sorted(expected - given), sorted(given - expected))


def _mismatch(report: LoadReport, limit: Optional[int] = None) -> str:
    def show(keys):
        if limit is None or len(keys) <= limit:
            return str(keys)
        return str(keys[:limit])[:-1] + ', ...]'
    return (f'{len(report.missing_keys)} missing keys '
            f'{show(report.missing_keys)}, {len(report.unexpected_keys)} '
            f'unexpected keys {show(report.unexpected_keys)}')


def load_state_dict(module: torch.nn.Module,
                    state_dict: Dict[str, torch.Tensor],
                    strict: bool = False,
                    source: str = 'state_dict') -> LoadReport:
    """``module.load_state_dict`` that reports (or, if strict, raises on)
    missing and unexpected keys, and refuses a load that matches nothing.

    Args:
        module (nn.Module): Where the weights go.
        state_dict (dict): Weights in the module's key layout.
        strict (bool): Raise ``KeyError`` on any mismatch. Defaults to False.
        source (str): The weights' origin, for messages.

    Returns:
        LoadReport: The missing and unexpected keys (also logged and warned).
    """
    name = type(module).__name__
    if not set(state_dict) & set(module.state_dict()):
        raise KeyError(f'{source} shares no key with {name}; nothing would '
                       f'be loaded.{_layout_hint(state_dict)} First keys: '
                       f'{sorted(state_dict)[:5]}')
    missing, unexpected = module.load_state_dict(state_dict, strict=False)
    report = LoadReport(sorted(missing), sorted(unexpected))
    if report.missing_keys or report.unexpected_keys:
        message = (f'loading {source} into {name}: {_mismatch(report)}.'
                   f'{fusion_hint(module, report.unexpected_keys)}')
        if strict:
            raise KeyError(message)
        _log_warning(message)
        warnings.warn(message)
    return report


def load_checkpoint(module: torch.nn.Module,
                    filename: str,
                    prefix: Optional[str] = None,
                    map_location='cpu',
                    strict: bool = False,
                    loader: Optional[Callable] = None) -> LoadReport:
    """Load a checkpoint file's weights into ``module`` with a key report.

    Args:
        module (nn.Module): Where the weights go.
        filename (str): Local path or URL (anything mmengine's
            ``CheckpointLoader`` reads; local files and URLs end up in
            :func:`load_checkpoint_file`).
        prefix (str, optional): Keep only keys starting with it and strip
            it, e.g. 'backbone.' for a classifier checkpoint. Defaults to
            None.
        map_location: Defaults to 'cpu'.
        strict (bool): Raise instead of warning on any mismatch.
            Defaults to False.
        loader (callable, optional): ``loader(filename, map_location)``;
            defaults to mmengine's ``CheckpointLoader.load_checkpoint``.

    Returns:
        LoadReport: The missing and unexpected keys.
    """
    if loader is None:
        from mmengine.runner.checkpoint import CheckpointLoader
        loader = CheckpointLoader.load_checkpoint
    checkpoint = loader(filename, map_location=map_location)
    state_dict = state_dict_of(checkpoint, source=str(filename))
    if prefix:
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()
                      if k.startswith(prefix)}
        if not state_dict:
            raise KeyError(f'no key of checkpoint {filename} starts with '
                           f'prefix {prefix!r}')
    return load_state_dict(module, state_dict, strict=strict,
                           source=str(filename))


def check_checkpoint_matches(model: torch.nn.Module, checkpoint: str) -> None:
    """Raise ``ValueError`` if ``checkpoint`` does not hold this model's
    weights, naming what is missing and unexpected.

    mmengine loads test checkpoints non-strictly and only logs mismatches, so
    a wrong checkpoint would be evaluated with random weights.
    """
    state = state_dict_of(load_checkpoint_file(checkpoint, 'cpu'),
                          source=str(checkpoint))
    model = getattr(model, 'module', model)
    report = compare_keys(model, state)
    if report.missing_keys or report.unexpected_keys:
        raise ValueError(
            f'checkpoint {checkpoint} does not match the model of this '
            f'config: {_mismatch(report, limit=5)}.'
            f'{fusion_hint(model, report.unexpected_keys)}')
