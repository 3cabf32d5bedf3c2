"""The user's opt-in to unpickle a checkpoint in full.

Trust is per file and per run: ``--trust-checkpoint`` on a tool, the
environment variable :data:`TRUST_ENV` (read at every load, so dataloader
workers and child processes see it), or :func:`trust_checkpoints` for a
block of Python code.
"""
import contextlib
import os
from typing import Iterator

#: Set to 1 to load checkpoints that need more than the safe reader.
TRUST_ENV = 'MMMOBILEMAMBA_TRUST_CHECKPOINTS'
_TRUE = ('1', 'true', 'yes', 'on')

OPT_IN = (f'pass --trust-checkpoint to the tool, or set {TRUST_ENV}=1 in '
          'the environment (Python API)')


def checkpoints_trusted() -> bool:
    """Whether ``MMMOBILEMAMBA_TRUST_CHECKPOINTS`` allows unpickling."""
    return os.environ.get(TRUST_ENV, '').strip().lower() in _TRUE


@contextlib.contextmanager
def trust_checkpoints(enabled: bool = True) -> Iterator[None]:
    """Trust every checkpoint loaded inside the block (if ``enabled``).

    Sets :data:`TRUST_ENV` for the block; with ``enabled=False`` the
    environment is left as it is.
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
        'unpickling, which can run code from the file) and use the configs '
        'stored in them as code; only for files you made or trust. Same as '
        f'{TRUST_ENV}=1')
