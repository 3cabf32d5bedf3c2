"""Check that a weight transformation (BN fusion, LoRA merging) kept a
model's outputs: the tools print the difference and fail above a bar."""
import sys
from typing import Sequence

import torch


def max_relative_difference(outs: Sequence[torch.Tensor],
                            refs: Sequence[torch.Tensor]) -> float:
    """Worst ``max |o - r| / max |r|`` over paired outputs."""
    if len(outs) != len(refs) or not outs:
        raise ValueError(f'expected as many outputs as references (and at '
                         f'least one), got {len(outs)} and {len(refs)}')
    return max(((o - r).abs().max() / r.abs().max().clamp_min(1e-12)).item()
               for o, r in zip(outs, refs))


def report_difference(what: str, outs: Sequence[torch.Tensor],
                      refs: Sequence[torch.Tensor], tolerance: float) -> int:
    """Print ``what``'s max relative difference; 1 (an exit code, with an
    error line on stderr) above ``tolerance``, else 0."""
    worst = max_relative_difference(outs, refs)
    print(f'{what}: max relative difference {worst:.3g}')
    if worst > tolerance:
        print(f'error: difference above {tolerance}', file=sys.stderr)
        return 1
    return 0
