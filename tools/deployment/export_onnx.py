"""Export to ONNX: ``tools/deployment/export.py --target onnx``.

    python tools/deployment/export_onnx.py CONFIG CKPT OUT.onnx
        [--dynamic-batch] [--shape H [W]] [--features] [--int8 --calib-dir DIR]

See :mod:`mmmobilemamba.deploy.export_cli` for every option.
"""
import sys
from typing import Optional, Sequence

from mmmobilemamba.deploy.export_cli import main as _main


def main(argv: Optional[Sequence[str]] = None) -> int:
    return _main(argv, target='onnx')


if __name__ == '__main__':
    sys.exit(main())
