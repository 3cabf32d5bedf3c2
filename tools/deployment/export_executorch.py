"""Export to an ExecuTorch program delegated to XNNPACK:
``tools/deployment/export.py --target xnnpack``.

    python tools/deployment/export_executorch.py CONFIG CKPT OUT.pte
        [--shape H [W]] [--features] [--int8 --calib-dir DIR [--quantize-ss2d]]

See :mod:`mmmobilemamba.deploy.export_cli` for every option.
"""
import sys
from typing import Optional, Sequence

from mmmobilemamba.deploy.export_cli import main as _main


def main(argv: Optional[Sequence[str]] = None) -> int:
    return _main(argv, target='xnnpack')


if __name__ == '__main__':
    sys.exit(main())
