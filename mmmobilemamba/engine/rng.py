"""Random-number-generator states as checkpoint-friendly data, and seeds
derived from a position in training.

States are stored as tensors, ints, floats, strings, lists and tuples only,
so a checkpoint that holds them loads with ``torch.load(weights_only=True)``
and no extra allowlist.
"""
import random
from typing import Optional

import numpy as np
import torch

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One step of the SplitMix64 generator: a well-mixed 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(*values: int) -> int:
    """A 64-bit seed that depends on every one of ``values`` (ints)."""
    h = 0
    for v in values:
        h = _splitmix64(h ^ (int(v) & _MASK64))
    return h


def seed_cpu_generators(seed: int) -> None:
    """Seed Python's ``random``, numpy's global and torch's CPU generator.

    CUDA generators are left alone: data pipelines run on the CPU.
    """
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.default_generator.manual_seed(seed)


def capture_cpu_state() -> tuple:
    """Fast in-process snapshot of the generators :func:`seed_cpu_generators`
    touches (not for checkpoints: numpy's state is a numpy object)."""
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def restore_cpu_state(state: tuple) -> None:
    """Undo :func:`seed_cpu_generators` with a :func:`capture_cpu_state`."""
    py, npy, pt = state
    random.setstate(py)
    np.random.set_state(npy)
    torch.set_rng_state(pt)


def get_rng_state() -> dict:
    """Every global generator's state, as checkpoint-friendly data.

    Returns:
        dict: ``python`` (``random.getstate()``, a tuple of ints), ``numpy``
        (a dict with the Mersenne-Twister key as an int64 tensor), ``torch``
        (the CPU generator's byte tensor) and, when CUDA is in use, ``cuda``
        (one byte tensor per device).
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=dict(
            name=str(name),
            keys=torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
            pos=int(pos),
            has_gauss=int(has_gauss),
            cached_gaussian=float(cached)),
        torch=torch.get_rng_state(),
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict, logger: Optional[object] = None) -> None:
    """Restore what :func:`get_rng_state` returned (possibly after a
    save/load round trip that moved tensors to another device)."""
    version, internal, gauss = state['python']
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    npy = state['numpy']
    np.random.set_state((npy['name'],
                         npy['keys'].cpu().numpy().astype(np.uint32),
                         int(npy['pos']), int(npy['has_gauss']),
                         float(npy['cached_gaussian'])))
    torch.set_rng_state(state['torch'].cpu().to(torch.uint8))
    cuda = state.get('cuda')
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
        elif logger is not None:
            logger.warning(
                f'the checkpoint holds CUDA generator states of {len(cuda)} '
                f'device(s), this process sees {torch.cuda.device_count()}: '
                'CUDA random numbers are not restored')
