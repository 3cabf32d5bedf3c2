"""A stock mmengine Runner checkpoint's message hub, read without numpy's or
mmengine's unpicklers; and the plain form this project writes instead.

mmengine pickles its message hub as ``HistoryBuffer`` objects holding numpy
arrays, plus numpy scalars. Allowlisting the real numpy globals lets a
crafted file drive ``numpy.core.multiarray._reconstruct`` (an object-dtype
array built from raw bytes is a pointer forged by the file: it crashes the
interpreter), and a real ``HistoryBuffer.__setstate__`` writes the class's
shared ``_statistics_methods`` (one file turns every logged mean into a
max). So the names a Runner writes are bound to the stand-ins below. They
only record what the pickle gives them; :func:`materialize` then checks it
(numeric dtypes, shapes and byte lengths that agree, known keys with the
right types) and builds fresh numpy arrays and ``HistoryBuffer`` objects
through their public constructors.

The project's own checkpoints need none of this:
:class:`~mmmobilemamba.engine.ResumableCheckpointHook` stores the message
hub with :func:`plain_message_hub` (tensors and Python scalars only) and
turns it back with :func:`message_hub_from_plain` when it is loaded.
"""
import contextlib
import contextvars
from collections import OrderedDict
from typing import Any, Dict, Iterator, List

import torch

#: The dtypes an array or scalar of a message hub may have (numpy codes).
NUMERIC_DTYPES = ('b1', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8', 'f2',
                  'f4', 'f8')
_STAT_METHODS = ('min', 'max', 'current', 'mean')
_MAX_NDIM = 32
#: Key marking the plain message hub written by :func:`plain_message_hub`.
PLAIN_FORMAT_KEY = '__mmmobilemamba_plain_message_hub__'
_NDARRAY_KEY = '__ndarray__'


class RunnerStateError(ValueError):
    """A stand-in was given data a Runner does not write."""


# the stand-ins created by the load in progress (see :func:`tracking`)
_CREATED: contextvars.ContextVar = contextvars.ContextVar(
    'mmmobilemamba_checkpoint_stubs', default=None)


class _Stub:
    """Base of the stand-ins: each instance is recorded by the load that
    creates it, and must be consumed (``used``) by :func:`materialize`;
    one left anywhere else (say, in an OrderedDict's attributes) makes the
    file refused."""

    used = False

    def __new__(cls, *args, **kwargs):
        stub = super().__new__(cls)
        created = _CREATED.get()
        if created is not None:
            created.append(stub)
        return stub


@contextlib.contextmanager
def tracking() -> Iterator[List[_Stub]]:
    """Record the stand-ins created inside the block (in this thread or
    task only)."""
    created: List[_Stub] = []
    token = _CREATED.set(created)
    try:
        yield created
    finally:
        _CREATED.reset(token)


class _DTypeStub(_Stub):
    """Stands for ``numpy.dtype(code, align, copy)``; BUILD gives the byte
    order."""

    code = None
    order = '<'

    def __init__(self, code=None, align=False, copy=True) -> None:
        if code not in NUMERIC_DTYPES:
            raise RunnerStateError(f'numpy dtype {str(code)[:40]!r} is not '
                                   f'one of {NUMERIC_DTYPES}')
        self.code = code
        self.order = '|' if code in ('b1', 'i1', 'u1') else '<'

    def __setstate__(self, state) -> None:
        if (not isinstance(state, tuple) or len(state) < 2
                or state[1] not in ('<', '>', '|', '=')
                or any(item is not None for item in state[2:5])):
            raise RunnerStateError(f'numpy dtype state {str(state)[:80]} is '
                                   'not that of a plain numeric dtype')
        self.order = state[1]

    def numpy(self):
        import numpy as np
        if self.code not in NUMERIC_DTYPES:
            raise RunnerStateError('a numpy dtype built without its code')
        self.used = True
        dtype = np.dtype(self.code)
        return dtype if self.order in ('|', '=') else \
            dtype.newbyteorder(self.order)


class _NDArrayType(_Stub):
    """Stands for the ``numpy.ndarray`` class passed to ``_reconstruct``."""


class _ArrayStub(_Stub):
    """What ``_reconstruct`` returns; BUILD gives shape, dtype and bytes."""

    state = None

    def __setstate__(self, state) -> None:
        self.state = state

    def numpy(self):
        import numpy as np
        state = self.state
        if not (isinstance(state, tuple) and len(state) == 5):
            raise RunnerStateError('a numpy array without its data')
        _, shape, dtype, fortran, data = state
        if (not isinstance(shape, tuple) or len(shape) > _MAX_NDIM
                or any(type(n) is not int or n < 0 for n in shape)):
            raise RunnerStateError(f'bad numpy array shape {str(shape)[:80]}')
        if not isinstance(dtype, _DTypeStub):
            raise RunnerStateError('a numpy array whose dtype is not a plain '
                                   'numeric dtype')
        if type(fortran) is not bool or not isinstance(data, bytes):
            raise RunnerStateError('a numpy array whose data is not raw bytes')
        dtype = dtype.numpy()
        count = 1
        for n in shape:
            count *= n
        if count * dtype.itemsize != len(data):
            raise RunnerStateError(
                f'numpy array of shape {shape} and dtype {dtype} needs '
                f'{count * dtype.itemsize} bytes, the file holds {len(data)}')
        self.used = True
        flat = np.frombuffer(data, dtype=dtype).copy()
        return flat.reshape(shape, order='F' if fortran else 'C')


def _reconstruct(cls, shape, typecode):
    """Stands for ``numpy.core.multiarray._reconstruct``."""
    if cls is not _NDArrayType:
        raise RunnerStateError(f'_reconstruct of {cls!r}: only numpy arrays '
                               'are read')
    return _ArrayStub()


class _ScalarStub(_Stub):

    dtype = data = None

    def __init__(self, dtype, data) -> None:
        self.dtype, self.data = dtype, data

    def numpy(self):
        import numpy as np
        if not isinstance(self.dtype, _DTypeStub) or not isinstance(
                self.data, bytes):
            raise RunnerStateError('a numpy scalar that is not numeric')
        dtype = self.dtype.numpy()
        self.used = True
        if len(self.data) != dtype.itemsize:
            raise RunnerStateError(f'numpy scalar of dtype {dtype} with '
                                   f'{len(self.data)} bytes')
        return np.frombuffer(self.data, dtype=dtype)[0]


def _scalar(dtype=None, data=None):
    """Stands for ``numpy.core.multiarray.scalar``."""
    return _ScalarStub(dtype, data)


class _StatMethod(_Stub):
    """What ``getattr(HistoryBuffer, name)`` stands for in a pickle."""

    name = None

    def __init__(self, name: str) -> None:
        self.name = name


class _HistoryBufferStub(_Stub):
    """Stands for ``mmengine.logging.HistoryBuffer``; records its state."""

    state = None

    def __setstate__(self, state) -> None:
        self.state = state

    def build(self, convert):
        from mmengine.logging import HistoryBuffer
        state = self.state
        allowed = {'max_length', '_log_history', '_count_history',
                   'statistics_methods'}
        if not isinstance(state, dict) or not set(state) <= allowed or \
                any(type(k) is not str for k in state):
            raise RunnerStateError(
                f'HistoryBuffer state with keys '
                f'{sorted(map(str, state))[:8] if isinstance(state, dict) else type(state).__name__}'  # noqa: E501
                f'; a Runner writes {sorted(allowed)}')
        methods = state.get('statistics_methods', {})
        if not isinstance(methods, dict) or any(
                k not in _STAT_METHODS or not isinstance(v, _StatMethod)
                or v.name != k for k, v in methods.items()):
            raise RunnerStateError('HistoryBuffer statistics methods other '
                                   f'than {_STAT_METHODS}')
        for method in methods.values():
            method.used = True
        max_length = state.get('max_length', 1000000)
        if type(max_length) is not int or max_length < 1:
            raise RunnerStateError(f'HistoryBuffer max_length {max_length!r}')
        log, count = (convert(state[k] if k in state else _empty())
                      for k in ('_log_history', '_count_history'))
        if not all(_is_vector(a) for a in (log, count)) or \
                len(log) != len(count):
            raise RunnerStateError('HistoryBuffer histories must be two 1-D '
                                   'numeric arrays of one length')
        self.used = True
        # the public constructor: nothing of the file reaches the class
        return HistoryBuffer(log, count, max_length)


def _empty():
    stub = _ArrayStub.__new__(_ArrayStub)
    stub.state = (1, (0, ), _DTypeStub('f8'), False, b'')
    return stub


def _is_vector(value) -> bool:
    import numpy as np
    return isinstance(value, np.ndarray) and value.ndim == 1


def _getattr(owner, name):
    """Stands for ``builtins.getattr``: only a HistoryBuffer's statistics
    methods, as a Runner pickles them."""
    if owner is _HistoryBufferStub and name in _STAT_METHODS:
        return _StatMethod(name)
    raise RunnerStateError(f'getattr({owner!r}, {str(name)[:40]!r}) is not '
                           'allowed in a checkpoint')


def stand_ins() -> Dict[str, Any]:
    """'module.name' -> stand-in, for every global a Runner's message hub
    pickles (both numpy 1.x ``numpy.core`` and 2.x ``numpy._core``)."""
    names = {
        'mmengine.logging.history_buffer.HistoryBuffer': _HistoryBufferStub,
        'builtins.getattr': _getattr,
        'numpy.ndarray': _NDArrayType,
        'numpy.dtype': _DTypeStub,
    }
    for core in ('numpy.core', 'numpy._core'):
        names[f'{core}.multiarray._reconstruct'] = _reconstruct
        names[f'{core}.multiarray.scalar'] = _scalar
    # numpy 2 may name a dtype by its class
    for code, cls in (('f8', 'Float64DType'), ('i8', 'Int64DType'),
                      ('f4', 'Float32DType'), ('i4', 'Int32DType')):
        names[f'numpy.dtypes.{cls}'] = _dtype_class(code)
    return names


def unpickler_globals() -> Dict[str, Any]:
    """:func:`stand_ins` plus the stand-ins' own classes under their own
    names: torch's unpickler builds (BUILD) only instances of allowlisted
    types."""
    names = stand_ins()
    classes = [v for v in names.values() if isinstance(v, type)]
    for cls in [_DTypeStub, _ArrayStub, _ScalarStub, _StatMethod] + classes:
        names.setdefault(f'{cls.__module__}.{cls.__qualname__}', cls)
    return names


def _dtype_class(code: str):
    class _FixedDType(_DTypeStub):

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(code)

    _FixedDType.__name__ = f'_DType_{code}'
    return _FixedDType


_STUBS = (_Stub, )


def materialize(obj, created: List[_Stub], max_depth: int = 64):
    """Replace the stand-ins in a loaded checkpoint by real, checked objects.

    Walks dicts, lists and tuples. A stand-in in one of them is turned into
    the checked object or refused; ``created`` (from :func:`tracking`) must
    then hold no stand-in left unused, wherever the file hid it.

    Raises:
        RunnerStateError: The file gave a stand-in data a Runner does not
            write, put one where a Runner never does, or nests containers
            deeper than ``max_depth``.
    """
    done: Dict[int, Any] = {}

    def convert(value, depth=0):
        if id(value) in done:
            return done[id(value)]
        if depth > max_depth:
            raise RunnerStateError(f'containers nested deeper than '
                                   f'{max_depth} levels')
        if isinstance(value, (_ArrayStub, _ScalarStub)):
            result = value.numpy()
        elif isinstance(value, _HistoryBufferStub):
            result = value.build(lambda v: convert(v, depth + 1))
        elif isinstance(value, _STUBS):
            raise RunnerStateError(f'a stray {type(value).__name__[1:]} in '
                                   'the checkpoint')
        elif isinstance(value, dict):
            done[id(value)] = value  # before the items: cycles end here
            for key in list(value):
                value[key] = convert(value[key], depth + 1)
            result = value
        elif isinstance(value, list):
            done[id(value)] = value
            value[:] = [convert(v, depth + 1) for v in value]
            result = value
        elif type(value) is tuple:
            result = tuple(convert(v, depth + 1) for v in value)
        else:
            return value
        done[id(value)] = result
        return result

    if not created:
        return obj
    result = convert(obj)
    if _contains_stub(result):
        raise RunnerStateError('a numpy/HistoryBuffer object where a Runner '
                               'never writes one')
    left = [stub for stub in created if not stub.used]
    if left:
        raise RunnerStateError(
            f'{len(left)} numpy/HistoryBuffer object(s) '
            f'({type(left[0]).__name__[1:]}, ...) where a Runner never '
            'writes one')
    return result


def _children(value):
    """What a loaded object refers to: container items (dict keys too) and
    the attributes of objects that have them (a tensor's metadata, an
    OrderedDict's BUILD state)."""
    if isinstance(value, dict):
        yield from value.keys()
        yield from value.values()
    elif isinstance(value, (list, tuple, set, frozenset)):
        yield from value
    if not isinstance(value, type) and isinstance(
            getattr(value, '__dict__', None), dict):
        yield from value.__dict__.values()


def _contains_stub(obj) -> bool:
    """Whether a stand-in is reachable from ``obj``, anywhere."""
    seen, stack = set(), [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, _STUBS):
            return True
        if id(value) in seen or isinstance(value, (str, bytes, int, float)):
            continue
        seen.add(id(value))
        stack.extend(_children(value))
    return False


# ----------------------------------------------------------------------
# The plain message hub of the project's own checkpoints
# ----------------------------------------------------------------------
def _to_plain(value):
    import numpy as np
    if isinstance(value, np.ndarray) and value.dtype.kind in 'biuf':
        return {_NDARRAY_KEY: torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, np.generic) and value.dtype.kind in 'biuf':
        return value.item()
    if isinstance(value, dict):
        return type(value)((k, _to_plain(v)) for k, v in value.items()) \
            if type(value) in (dict, OrderedDict) else value
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        return type(value)(_to_plain(v) for v in value)
    return value


def _from_plain(value):
    if isinstance(value, dict):
        if set(value) == {_NDARRAY_KEY} and isinstance(
                value[_NDARRAY_KEY], torch.Tensor):
            return value[_NDARRAY_KEY].numpy()
        return type(value)((k, _from_plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        return type(value)(_from_plain(v) for v in value)
    return value


def plain_message_hub(state: dict) -> dict:
    """A message hub state dict (``MessageHub.state_dict()``) with its
    HistoryBuffers and numpy values as tensors and Python scalars."""
    from mmengine.logging import HistoryBuffer
    scalars = OrderedDict()
    for key, buffer in state.get('log_scalars', {}).items():
        if not isinstance(buffer, HistoryBuffer):
            raise TypeError(f'message hub scalar {key!r} is a '
                            f'{type(buffer).__name__}, not a HistoryBuffer')
        log, count = buffer.data
        scalars[key] = dict(log_history=_to_plain(log),
                            count_history=_to_plain(count),
                            max_length=int(buffer.max_length))
    plain = {k: _to_plain(v) for k, v in state.items() if k != 'log_scalars'}
    plain['log_scalars'] = scalars
    plain[PLAIN_FORMAT_KEY] = 1
    return plain


def is_plain_message_hub(state) -> bool:
    """Whether ``state`` was written by :func:`plain_message_hub`."""
    return isinstance(state, dict) and state.get(PLAIN_FORMAT_KEY) == 1


def message_hub_from_plain(state: dict) -> dict:
    """The inverse of :func:`plain_message_hub`: a state dict that
    ``MessageHub.load_state_dict`` accepts."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    scalars = OrderedDict()
    for key, entry in state.get('log_scalars', {}).items():
        try:
            log, count = (np.asarray(_from_plain(entry[k])) for k in
                          ('log_history', 'count_history'))
            scalars[key] = HistoryBuffer(log, count,
                                         int(entry['max_length']))
        except (KeyError, TypeError, ValueError) as err:
            raise RunnerStateError(
                f'message hub scalar {key!r}: {type(err).__name__}: {err}'
            ) from None
    result = {k: _from_plain(v) for k, v in state.items()
              if k not in ('log_scalars', PLAIN_FORMAT_KEY)}
    result['log_scalars'] = scalars
    return result
