#!/usr/bin/env bash
# Create or update the project environment in .venv/ (idempotent).
#
#   bash tools/install.sh
#
# A second run reuses what is there: every step first checks whether its result
# is already installed, and mmcv 2.1.0 (which has no binary wheel and takes
# ~20-30 minutes to compile on 2 cores) comes from pip's wheel cache.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=$ROOT/.venv
VPY=$VENV/bin/python
CONSTRAINTS=$ROOT/requirements/constraints.txt
STEP="start"

step() { STEP="$1"; echo "==> [install] $1"; }
on_error() {
  echo >&2
  echo "!! tools/install.sh failed in step: $STEP" >&2
  case "$STEP" in
    venv*) echo "   Needs Python 3.11 with the venv module (python3.11 -m venv)." >&2 ;;
    torch*) echo "   torch/torchvision come from PyPI (pip --isolated, ~2.5 GB download);" \
                 "check network access to the package index and free disk space." >&2 ;;
    mmcv*) echo "   mmcv 2.1.0 is compiled from source: needs gcc/g++ and the Python headers." \
                "Re-run the script; a finished build is reused from pip's cache." >&2 ;;
    native*) echo "   Building the native kernels is optional; this step should not fail." >&2 ;;
    mmmobilemamba*) echo "   The editable install compiles the selective scan's CPU kernel: needs g++" \
                         "and the Python headers (torch.utils.cpp_extension)." >&2 ;;
    verify*) echo "   The environment is installed but does not work; see the traceback above." >&2 ;;
    *) echo "   Re-run the script after fixing the error above; finished steps are skipped." >&2 ;;
  esac
}
trap on_error ERR

pip_install() { "$VPY" -m pip install --disable-pip-version-check -q "$@"; }
has() { "$VPY" - "$@" >/dev/null 2>&1; }

step "venv: $VENV"
if [ ! -x "$VPY" ]; then
  "$PY" -m venv "$VENV"
fi
"$VPY" -c 'import sys; assert sys.version_info[:2] >= (3, 9), sys.version' 

step "build tools (pip, setuptools<82 for mmcv's pkg_resources, wheel, ninja)"
pip_install -c "$CONSTRAINTS" "setuptools>=77.0.3,<82" wheel ninja

step "torch 2.13.0 + torchvision 0.28.0 (PyPI builds)"
# --isolated skips this machine's pip configuration, whose local folder holds a
# torch-2.13.0+cpu wheel that the PyPI torchvision cannot load beside
# ("operator torchvision::nms does not exist").
if ! has <<'PYEOF'
import torch, torchvision
base, _, local = torch.__version__.partition("+")
assert base == "2.13.0" and local != "cpu", torch.__version__
assert torchvision.__version__.split("+")[0] == "0.28.0", torchvision.__version__
import torchvision.ops
PYEOF
then
  "$VPY" -m pip install --isolated --disable-pip-version-check -q \
      "torch==2.13.0" "torchvision==0.28.0"
fi

step "runtime requirements (OpenMMLab toolboxes, PyWavelets, ONNX, ...)"
pip_install -c "$CONSTRAINTS" -r requirements/runtime.txt -r requirements/tests.txt

step "mmcv 2.1.0 with compiled ops (from source, or pip's wheel cache)"
if ! has <<'PYEOF'
import mmcv, mmcv._ext
assert mmcv.__version__ == "2.1.0", mmcv.__version__
PYEOF
then
  # --no-build-isolation: otherwise the build cannot see torch and silently
  # produces an mmcv without compiled ops.
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
    pip_install -c "$CONSTRAINTS" --no-build-isolation "mmcv==2.1.0"
fi

step "mmmobilemamba (editable)"
pip_install -c "$CONSTRAINTS" --no-build-isolation --no-deps -e .

step "native scan kernels for ONNX Runtime and ExecuTorch (opt-in deploy targets)"
# ONNX Runtime's C API headers come from the npm registry, ExecuTorch's
# from its wheel; where a library cannot be built (no compiler, no npm),
# the install goes on and the '*-native' targets say why.
"$VPY" -m mmmobilemamba.deploy.native build --optional

step "verify: mmcv._ext, torchvision.ops.nms, mmpretrain/mmdet/mmseg, executorch, the compiled CPU ops, registration"
"$VPY" - <<'PYEOF'
import torch, torchvision, mmcv, mmcv._ext, mmengine
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
assert keep.tolist() == [0, 2], keep
from mmcv.ops import nms
import mmpretrain, mmdet, mmseg
import mmpretrain.models  # fails if transformers got in (see runtime.txt)
import torchao
from importlib.metadata import version
from executorch.runtime import Runtime
assert Runtime.get().backend_registry.is_available("XnnpackBackend")
import mmmobilemamba
from mmmobilemamba.ops.scan import cpu
# this environment must have the compiled scan (a user's may fall back)
ok = cpu.status(torch.device("cpu"))
assert ok is True, f"the compiled selective scan was not built: {ok}"
print(f"compiled selective scan: {cpu.isa()} kernels")
from mmmobilemamba.ops.depthwise_conv import depthwise_missing
assert depthwise_missing() is None, depthwise_missing()
x, w = torch.randn(1, 8, 5, 5), torch.randn(8, 1, 3, 3)
torch.testing.assert_close(
    torch.ops.mmmobilemamba.depthwise_conv2d(x, w, None, [1, 1], [1, 1]),
    torch.nn.functional.conv2d(x, w, None, 1, 1, groups=8))
print("compiled depthwise convolution: built")
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"mmengine {mmengine.__version__}, mmcv {mmcv.__version__} (ops compiled), "
      f"mmpretrain {mmpretrain.__version__}, mmdet {mmdet.__version__}, "
      f"mmseg {mmseg.__version__}, executorch {version('executorch')}, "
      f"torchao {torchao.__version__}, mmmobilemamba {mmmobilemamba.__version__}")
PYEOF
echo "==> [install] done: activate with 'source .venv/bin/activate'"
