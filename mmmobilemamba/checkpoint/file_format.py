"""What a file claims to be, checked before any of it is unpickled.

:func:`inspect_checkpoint` reads only the first bytes and, for a zip
archive, its central directory (Python's ``zipfile``, no decompression). It
tells a PyTorch checkpoint from an HTML error page, a Git LFS pointer, a
TorchScript archive, torch's legacy tar format, a broken zip or random
bytes, and refuses an archive whose entries would expand far beyond the
file's size (a zip bomb). The numbers of bytes each record holds are kept,
so that the unpickler can refuse a tensor that claims more data than its
record has.
"""
import os
import tarfile
import zipfile
from typing import Dict, NamedTuple, Optional

from .errors import CheckpointLimitError, CorruptCheckpointError

#: Environment variable overriding :data:`DEFAULT_MAX_EXPANSION`.
MAX_EXPANSION_ENV = 'MMMOBILEMAMBA_CHECKPOINT_MAX_EXPANSION'
#: Largest allowed (sum of uncompressed entry sizes) / (file size). torch
#: stores entries uncompressed, so a real checkpoint is at about 1.0.
DEFAULT_MAX_EXPANSION = 4.0
_ZIP_MAGIC = b'PK\x03\x04'
_PICKLE_PROTOCOLS = tuple(bytes([0x80, p]) for p in range(2, 6))


class CheckpointFile(NamedTuple):
    """What :func:`inspect_checkpoint` found."""
    #: 'zip' (torch >= 1.6) or 'legacy' (torch's older pickle stream).
    kind: str
    #: Record name inside the archive (``data/0``) -> bytes; zip only.
    record_sizes: Dict[str, int]


def max_expansion(value: Optional[float] = None) -> float:
    """The expansion limit: ``value``, else :data:`MAX_EXPANSION_ENV`, else
    :data:`DEFAULT_MAX_EXPANSION`."""
    if value is None:
        text = os.environ.get(MAX_EXPANSION_ENV, '').strip()
        if not text:
            return DEFAULT_MAX_EXPANSION
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f'{MAX_EXPANSION_ENV}={text!r} is not a number'
                             ) from None
    if not value > 0:
        raise ValueError(f'the checkpoint expansion limit must be > 0, '
                         f'got {value}')
    return float(value)


def _what_it_looks_like(head: bytes) -> str:
    text = head.lstrip()[:64].lower()
    if text.startswith((b'<!doctype html', b'<html', b'<head', b'<?xml')):
        return ('an HTML/XML page, e.g. the error page of a failed download '
                '(check the URL, or log in where the file needs it)')
    if text.startswith(b'version https://git-lfs'):
        return ('a Git LFS pointer, not the file itself (run git lfs pull '
                'in the repository it came from)')
    if text.startswith((b'{', b'[')):
        return 'JSON or other text'
    if head[:2] == b'\x1f\x8b':
        return 'a gzip stream (decompress it first)'
    return 'not a format torch writes'


def _not_a_checkpoint(filename: str, size: int, head: bytes
                      ) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f'cannot read checkpoint {filename} ({size} bytes): not a PyTorch '
        f'checkpoint: it starts with {head[:32]!r}, '
        f'{_what_it_looks_like(head)}. Download or save it again.')


def _zip_records(filename: str, size: int, limit: float
                 ) -> Dict[str, int]:
    try:
        with zipfile.ZipFile(filename) as archive:
            infos = archive.infolist()
    except Exception as err:  # noqa: BLE001  (zipfile raises many kinds)
        raise CorruptCheckpointError(
            f'cannot read checkpoint {filename} ({size} bytes): a corrupt or '
            f'truncated zip archive ({type(err).__name__}: {err}); it was '
            'probably cut short by an interrupted download, copy or save. '
            'Download or save it again; to resume training, pass an earlier '
            'checkpoint of the work dir to --resume.') from None
    names = [info.filename for info in infos]
    prefix = names[0].split('/', 1)[0] + '/' if names and '/' in names[0] \
        else ''
    if prefix + 'constants.pkl' in names:
        raise CorruptCheckpointError(
            f'cannot read checkpoint {filename}: a TorchScript archive '
            '(torch.jit.save), not a checkpoint; load it with torch.jit.load, '
            'which runs its code, only if you trust it.')
    if prefix + 'data.pkl' not in names:
        raise CorruptCheckpointError(
            f'cannot read checkpoint {filename} ({size} bytes): a zip archive '
            f'but not a PyTorch checkpoint (no data.pkl; entries: '
            f'{names[:5]}).')
    expanded = sum(info.file_size for info in infos)
    if expanded > limit * max(size, 1):
        raise CheckpointLimitError(
            f'refusing {filename}: its archive entries expand to '
            f'{expanded} bytes, {expanded / max(size, 1):.1f}x its size of '
            f'{size} bytes, above the limit of {limit:g}x (a zip bomb, or '
            'compressed entries torch does not write). If you trust the '
            f'file, raise the limit with {MAX_EXPANSION_ENV}.')
    return {info.filename[len(prefix):]: info.file_size for info in infos
            if info.filename.startswith(prefix)}


def inspect_checkpoint(filename: str,
                       expansion_limit: Optional[float] = None
                       ) -> CheckpointFile:
    """Check that ``filename`` looks like a PyTorch checkpoint.

    Args:
        filename (str): A local file.
        expansion_limit (float, optional): See :func:`max_expansion`.

    Returns:
        CheckpointFile: Its format and, for a zip archive, record sizes.

    Raises:
        CorruptCheckpointError: Empty, not a checkpoint (the message says
            what it looks like instead), a TorchScript archive, the legacy
            tar format, or a broken zip.
        CheckpointLimitError: A zip archive that expands beyond the limit.
    """
    limit = max_expansion(expansion_limit)
    size = os.path.getsize(filename)
    with open(filename, 'rb') as f:
        head = f.read(512)
    if size == 0:
        raise CorruptCheckpointError(
            f'cannot read checkpoint {filename}: the file is empty (0 bytes), '
            'truncated by an interrupted download, copy or save. Download or '
            'save it again; to resume training, pass an earlier checkpoint '
            'of the work dir to --resume.')
    if head.startswith(_ZIP_MAGIC):
        return CheckpointFile('zip', _zip_records(filename, size, limit))
    if size >= 512 and _is_tar(filename):
        raise CorruptCheckpointError(
            f'cannot read checkpoint {filename}: torch\'s legacy tar format '
            '(PyTorch < 0.4), '
            'which cannot be read without unpickling it in full. Load and '
            're-save it with a torch version of its time, in an environment '
            'you trust.')
    if head.startswith(_PICKLE_PROTOCOLS):
        return CheckpointFile('legacy', {})
    raise _not_a_checkpoint(filename, size, head)


def _is_tar(filename: str) -> bool:
    try:
        return tarfile.is_tarfile(filename)
    except (OSError, ValueError, EOFError):
        return False
