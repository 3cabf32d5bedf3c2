"""Helpers for tests: repository paths and running tools/ as a user would."""
import os
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED = osp.join(osp.dirname(REPO), 'shared')


def run_tool(*args: str, cwd: str = REPO, env: dict = None,
             timeout: int = 900, check: bool = True) -> str:
    """Run ``python <args>`` from the repository root; return its output.

    On failure the output is part of the assertion message.
    """
    full_env = dict(os.environ)
    full_env.setdefault('PYTHONUNBUFFERED', '1')
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=full_env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{" ".join(args)} exited {proc.returncode}:\n'
                             f'{proc.stdout[-6000:]}')
    return proc.stdout if check else (proc.returncode, proc.stdout)


class _Marker:
    """Unpickling this creates the directory ``path`` (os.makedirs)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path, 0o777, True))


def write_payload_checkpoint(path: str, marker: str,
                             state_dict: dict = None) -> None:
    """A checkpoint with a state dict plus an object whose unpickling would
    run code: here it only creates the directory ``marker``."""
    import torch
    torch.save({'state_dict': dict(state_dict or {'w': torch.ones(2)}),
                'meta': {}, 'payload': _Marker(marker)}, path)
