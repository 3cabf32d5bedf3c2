"""Export a model to ONNX or to an ExecuTorch/XNNPACK program.

    python tools/deployment/export.py CONFIG CKPT OUT --target onnx|xnnpack
        [--shape H [W]] [--features] [--int8 --calib-dir DIR] ...

See :mod:`mmmobilemamba.deploy.export_cli` for every option.
"""
import sys

from mmmobilemamba.deploy.export_cli import main

if __name__ == '__main__':
    sys.exit(main())
