"""Crash-safe file writes.

A file is written under a temporary name in its own directory, flushed to
disk, then renamed over the final name. A rename within one file system is
atomic, so a reader (or a resumed run) sees either the old file or the whole
new one, never a truncated file, whenever the writer is killed.
"""
import os
import os.path as osp
import secrets
from typing import Union

from mmengine.fileio import LocalBackend, register_backend

#: Prefix of the temporary files; a name that no checkpoint pattern matches.
TMP_PREFIX = '.tmp-'


def _fsync_dir(dirname: str) -> None:
    """Persist a rename: the directory entry lives in the directory."""
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Union[str, os.PathLike], data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never seen incomplete.

    Args:
        path (str | PathLike): Destination; its directory is created if
            needed.
        data (bytes): The whole content.
    """
    path = os.fspath(path)
    dirname = osp.dirname(osp.abspath(path))
    os.makedirs(dirname, exist_ok=True)
    tmp = osp.join(
        dirname, f'{TMP_PREFIX}{osp.basename(path)}.{os.getpid()}.'
        f'{secrets.token_hex(4)}')
    # 0o666 and the umask: the permissions a plain open() would give
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(dirname)


def atomic_write_text(path: Union[str, os.PathLike],
                      text: str,
                      encoding: str = 'utf-8') -> None:
    """:func:`atomic_write_bytes` for text."""
    atomic_write_bytes(path, text.encode(encoding))


def remove_stale_tmp_files(dirname: str) -> list:
    """Delete temporary files that a killed writer left in ``dirname``.

    Returns:
        list: The paths removed.
    """
    removed = []
    if not osp.isdir(dirname):
        return removed
    for name in os.listdir(dirname):
        if name.startswith(TMP_PREFIX):
            path = osp.join(dirname, name)
            if osp.isfile(path):
                os.remove(path)
                removed.append(path)
    return removed


@register_backend('atomic_local', force=True)
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put`` and ``put_text``.

    Select it with ``backend_args=dict(backend='atomic_local')``, e.g. on a
    CheckpointHook: every checkpoint then appears complete or not at all.
    """

    def put(self, obj: bytes, filepath) -> None:
        atomic_write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write_text(filepath, obj, encoding)
