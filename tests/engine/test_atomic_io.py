"""Atomic writes: a process killed while writing leaves the old file (or no
file), never a truncated one under the final name."""
import os
import signal
import subprocess
import sys

from mmengine.fileio import get_file_backend

from mmmobilemamba.engine.atomic_io import (TMP_PREFIX, atomic_write_bytes,
                                            remove_stale_tmp_files)


def test_write_replaces_whole_file_with_plain_permissions(tmp_path):
    path = tmp_path / 'sub' / 'ckpt.pth'
    atomic_write_bytes(path, b'old')
    atomic_write_bytes(path, b'new content')
    assert path.read_bytes() == b'new content'
    assert os.listdir(path.parent) == ['ckpt.pth']  # no temporary left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_killed_writer_leaves_previous_file(tmp_path):
    path = tmp_path / 'ckpt.pth'
    atomic_write_bytes(path, b'complete previous checkpoint')
    # a child that dies after writing part of a 32 MiB file
    script = f'''
import os, signal
from mmmobilemamba.engine.atomic_io import atomic_write_bytes
real_write = os.write
def write_then_die(fd, data):
    real_write(fd, bytes(data[:len(data) // 3]))
    os.kill(os.getpid(), signal.SIGKILL)
os.write = write_then_die
atomic_write_bytes({str(path)!r}, b'x' * (32 << 20))
'''
    proc = subprocess.run([sys.executable, '-c', script])
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == b'complete previous checkpoint'
    partial = [n for n in os.listdir(tmp_path) if n.startswith(TMP_PREFIX)]
    assert len(partial) == 1
    assert remove_stale_tmp_files(str(tmp_path)) == [
        str(tmp_path / partial[0])]
    assert os.listdir(tmp_path) == ['ckpt.pth']


def test_mmengine_backend_is_atomic(tmp_path):
    backend = get_file_backend(
        str(tmp_path), backend_args=dict(backend='atomic_local'))
    path = str(tmp_path / 'a' / 'b.txt')
    backend.put_text('hello', path)
    backend.put(b'bytes', path + '.bin')
    assert open(path).read() == 'hello'
    assert backend.isfile(path + '.bin')
