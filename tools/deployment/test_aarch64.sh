#!/usr/bin/env bash
# Cross-compile the scan's runtime kernels for aarch64 (phones are ARM) and
# run their reference test under qemu-user.
#
#   tools/deployment/test_aarch64.sh [--no-install] [--fetch-ort-headers]
#
# Phases (each timed, total at the end):
#   install   g++-aarch64-linux-gnu and qemu-user-static from apt, only
#             when missing (needs root or sudo; --no-install: fail instead)
#   test      ops/csrc/test_scan_native.cpp (scan_native::forward against a
#             double-precision reference): built for x86-64 and run, built
#             for aarch64 (-march=armv8-a: the NEON baseline) and run under
#             qemu-aarch64 -L /usr/aarch64-linux-gnu
#   vector    objdump -d of the aarch64 test: the scan's inner loops must
#             use NEON vector arithmetic (fmla/fmul/fadd on v registers)
#   ort       ops/csrc/ort_scan.cpp as an aarch64 shared object (C API only,
#             links nothing of ONNX Runtime), when the source and ORT's
#             headers are there: $MMMOBILEMAMBA_ORT_HEADERS, else the cache
#             that `python -m mmmobilemamba.deploy.native build --runtime
#             onnxruntime` fills (--fetch-ort-headers fills it with npm)
#   et        ops/csrc/et_scan.cpp compiled (-c) to an aarch64 object file
#             against the executorch wheel's headers: the wheel carries only
#             an x86-64 libexecutorch.so, so nothing is linked
#
# Exits non-zero when anything that ran failed. Environment: CROSS_CXX
# (default aarch64-linux-gnu-g++), CXX (default g++), PYTHON (default
# .venv/bin/python, else python3), OUT (default a temporary folder).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CSRC=$REPO/mmmobilemamba/ops/csrc
CROSS_CXX=${CROSS_CXX:-aarch64-linux-gnu-g++}
CXX=${CXX:-g++}
SYSROOT=/usr/aarch64-linux-gnu
if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
INSTALL=1
FETCH_ORT=0
for arg in "$@"; do
  case $arg in
    --no-install) INSTALL=0 ;;
    --fetch-ort-headers) FETCH_ORT=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-$(mktemp -d /tmp/mmmobilemamba-aarch64.XXXXXX)}
mkdir -p "$OUT"

# The flags of the project's builds (deploy/native/build.py, setup.py):
# -fopenmp-simd honours the kernels' `#pragma omp simd` (no OpenMP runtime);
# -fno-trapping-math lets GCC turn exp_'s clamps into selects, without
# which the recurrence loop is not vectorised (NEON, x86 baseline, AVX2).
# EXTRA_CXXFLAGS: more flags for every compile.
COMMON=(-O3 -std=c++20 -fopenmp-simd -fno-trapping-math -Wno-psabi -I"$CSRC" ${EXTRA_CXXFLAGS:-})
AARCH64=(-march=armv8-a)

RESULTS=()   # "phase: PASS|FAIL|SKIP (detail)"
FAILED=0
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
secs_since() { local d=$(($(now_ms) - $1)); printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); }
T_START=$(now_ms)
phase_start() { P_START=$(now_ms); echo; echo "== $1"; }
phase_end() {  # name status detail
  RESULTS+=("$(printf '%-8s %-4s %6ss  %s' "$1" "$2" "$(secs_since "$P_START")" "$3")")
  [[ $2 == FAIL ]] && FAILED=1
  return 0
}

# ---------------------------------------------------------------- install
phase_start install
need=()
command -v "$CROSS_CXX" >/dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || command -v qemu-aarch64 >/dev/null || need+=(qemu-user-static)
command -v objdump >/dev/null || need+=(binutils)
if ((${#need[@]} == 0)); then
  phase_end install PASS "already installed"
elif ((INSTALL == 0)); then
  echo "missing: ${need[*]} (--no-install)"
  phase_end install FAIL "missing ${need[*]}"
else
  SUDO=; [[ $(id -u) != 0 ]] && SUDO=sudo
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # the package lists are refreshed only when the install cannot find them
  if ! $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >"$OUT/apt.log" 2>&1; then
    $SUDO apt-get update -qq >>"$OUT/apt.log" 2>&1
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >>"$OUT/apt.log" 2>&1
  fi
  if command -v "$CROSS_CXX" >/dev/null && { command -v qemu-aarch64-static >/dev/null || command -v qemu-aarch64 >/dev/null; }; then
    phase_end install PASS "installed ${need[*]}"
  else
    tail -20 "$OUT/apt.log"
    phase_end install FAIL "apt-get install ${need[*]}"
  fi
fi
QEMU=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || echo qemu-aarch64-static)

# ---------------------------------------------------------------- test
run_test() {  # label binary [env...]
  local label=$1 bin=$2; shift 2
  local log=$OUT/$label.log
  env "$@" "${RUN_PREFIX[@]}" "$bin" >"$log" 2>&1
  local rc=$?
  sed 's/^/    /' "$log"
  local last
  last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
  if [[ $rc == 0 && $last == *" passed, 0 failed" ]]; then
    phase_end "$label" PASS "$last"
  else
    phase_end "$label" FAIL "exit $rc${last:+, $last}"
  fi
}

phase_start "test x86-64 (native)"
if $CXX "${COMMON[@]}" -pthread "$CSRC/test_scan_native.cpp" -o "$OUT/test_scan_native.x86_64" 2>"$OUT/x86_64.build.log"; then
  RUN_PREFIX=()
  run_test x86-64 "$OUT/test_scan_native.x86_64"
else
  cat "$OUT/x86_64.build.log"
  phase_end x86-64 FAIL "compile failed"
fi

phase_start "test aarch64 (qemu)"
AARCH_BIN=$OUT/test_scan_native.aarch64
if ! command -v "$CROSS_CXX" >/dev/null; then
  phase_end aarch64 FAIL "no $CROSS_CXX"
elif ! $CROSS_CXX "${COMMON[@]}" "${AARCH64[@]}" -pthread "$CSRC/test_scan_native.cpp" \
    -o "$AARCH_BIN" -fopt-info-vec-optimized 2>"$OUT/aarch64.build.log"; then
  grep -v 'optimized:' "$OUT/aarch64.build.log"
  phase_end aarch64 FAIL "cross-compile failed"
else
  file "$AARCH_BIN" 2>/dev/null | sed 's/^/    /'
  RUN_PREFIX=("$QEMU" -L "$SYSROOT")
  run_test aarch64 "$AARCH_BIN"
fi

# ---------------------------------------------------------------- vector
phase_start "vectorisation (aarch64)"
if [[ -x $AARCH_BIN ]]; then
  OBJDUMP=$(command -v aarch64-linux-gnu-objdump || echo objdump)
  $OBJDUMP -d --no-show-raw-insn -C "$AARCH_BIN" >"$OUT/aarch64.dis" 2>/dev/null
  # The instructions of the forward kernel's copy (isa_base::forward and
  # what is inlined into it: recur_tile, prepare, exp_, softplus_).
  awk '/^[0-9a-f]+ <.*isa_base::forward<float, float>.*>:$/ {on=1; next}
       /^[0-9a-f]+ <.*>:$/ {on=0} on' "$OUT/aarch64.dis" >"$OUT/forward.dis"
  vfma=$(grep -cE '\bfml[as]\s+v[0-9]+\.4s' "$OUT/forward.dis")
  vmul=$(grep -cE '\bf(mul|add|sub)\s+v[0-9]+\.4s' "$OUT/forward.dis")
  sfma=$(grep -cE '\bf(madd|msub|mla|mul)\s+s[0-9]+' "$OUT/forward.dis")
  loops=$(grep -c 'scan_kernel.h:[0-9]*:[0-9]*: optimized: loop vectorized' "$OUT/aarch64.build.log")
  lines=$(grep -o 'scan_kernel.h:[0-9]*:[0-9]*: optimized: loop vectorized using [0-9]* byte vectors' \
            "$OUT/aarch64.build.log" | sed 's/:[0-9]*: optimized: loop vectorized using / /' | sort -u | tr '\n' ';')
  # the recurrence h = exp(dt A) h + dt u B (recur_tile): its channel loop
  # is the line before the one that calls exp_(dt[c] * an[c])
  rline=$(($(grep -n 'exp_(dt\[c\] \* an\[c\])' "$CSRC/scan_kernel.h" | head -1 | cut -d: -f1) - 1))
  # (GCC names the loop by its for line or by its body's first line)
  if grep -qE "scan_kernel.h:($rline|$((rline + 1))):[0-9]+: optimized: loop vectorized" "$OUT/aarch64.build.log"; then
    recur="vectorised"
  else
    recur="NOT vectorised"
  fi
  echo "    isa_base::forward: $vfma NEON fmla/fmls .4s, $vmul fmul/fadd/fsub .4s, $sfma scalar s-register fp ops"
  echo "    -fopt-info-vec in scan_kernel.h ($loops reports): $lines"
  echo "    recurrence loop (scan_kernel.h:$rline): $recur"
  if ((vfma == 0)); then
    phase_end vector FAIL "no NEON fmla on v registers in isa_base::forward"
  elif [[ $recur == vectorised ]]; then
    phase_end vector PASS "$vfma fmla/fmls v.4s in isa_base::forward; recurrence loop vectorised"
  else
    # the results would be right, only slower: a flag or a kernel change
    # lost the vectorised recurrence
    phase_end vector FAIL "$vfma fmla/fmls v.4s; recurrence loop scan_kernel.h:$rline NOT vectorised"
  fi
else
  phase_end vector SKIP "no aarch64 binary"
fi

# ---------------------------------------------------------------- ort
phase_start "ONNX Runtime kernel (aarch64 shared object)"
ORT_HEADERS=${MMMOBILEMAMBA_ORT_HEADERS:-${XDG_CACHE_HOME:-$HOME/.cache}/mmmobilemamba/onnxruntime-headers/com.github.asus4.onnxruntime-0.4.9}
if [[ ! -f $CSRC/ort_scan.cpp ]]; then
  phase_end ort SKIP "no ort_scan.cpp"
else
  if [[ ! -f $ORT_HEADERS/onnxruntime_c_api.h && $FETCH_ORT == 1 ]]; then
    ORT_HEADERS=$(cd "$REPO" && "$PYTHON" -c \
      'from mmmobilemamba.deploy.native.onnxruntime import headers_dir; print(headers_dir(download=True))' \
      2>"$OUT/ort_fetch.log" | tail -1)
  fi
  if [[ ! -f $ORT_HEADERS/onnxruntime_c_api.h ]]; then
    phase_end ort SKIP "no ONNX Runtime headers (set MMMOBILEMAMBA_ORT_HEADERS or pass --fetch-ort-headers)"
  elif $CROSS_CXX "${COMMON[@]}" "${AARCH64[@]}" -shared -fPIC -fvisibility=hidden -I"$ORT_HEADERS" \
      "$CSRC/ort_scan.cpp" -o "$OUT/libmmmobilemamba_ort.aarch64.so" 2>"$OUT/ort.build.log"; then
    undef=$(aarch64-linux-gnu-nm -D --undefined-only "$OUT/libmmmobilemamba_ort.aarch64.so" 2>/dev/null | grep -ci onnx)
    exported=$(aarch64-linux-gnu-nm -D --defined-only "$OUT/libmmmobilemamba_ort.aarch64.so" 2>/dev/null | grep -c ' T ')
    file "$OUT/libmmmobilemamba_ort.aarch64.so" | sed 's/^/    /'
    phase_end ort PASS "libmmmobilemamba_ort.aarch64.so, $exported exported, $undef ORT symbols undefined (C API table only)"
  else
    tail -30 "$OUT/ort.build.log"
    phase_end ort FAIL "cross-compile failed"
  fi
fi

# ---------------------------------------------------------------- et
phase_start "ExecuTorch kernel (aarch64 object, compile only)"
ET_ROOT=$("$PYTHON" -c 'import importlib.util as u; s = u.find_spec("executorch"); print(list(s.submodule_search_locations)[0] if s else "")' 2>/dev/null)
ET_INC=$ET_ROOT/include
ET_C10=$ET_INC/executorch/runtime/core/portable_type/c10
if [[ ! -f $CSRC/et_scan.cpp ]]; then
  phase_end et SKIP "no et_scan.cpp"
elif [[ -z $ET_ROOT || ! -f $ET_INC/executorch/extension/kernel_util/make_boxed_from_unboxed_functor.h ]]; then
  phase_end et SKIP "no executorch wheel with headers (for $PYTHON)"
else
  ET_DEFS=(-DC10_USING_CUSTOM_GENERATED_MACROS -DET_EVENT_TRACER_ENABLED)
  [[ -f $ET_ROOT/lib/libexecutorch_threadpool.so ]] && ET_DEFS+=(-DET_USE_THREADPOOL)
  # -c: the wheel's libexecutorch.so is x86-64; an aarch64 app links this
  # object into its own ExecuTorch build.
  if $CROSS_CXX "${COMMON[@]}" "${AARCH64[@]}" -fPIC -fvisibility=hidden "${ET_DEFS[@]}" \
      -I"$ET_INC" -I"$ET_C10" -c "$CSRC/et_scan.cpp" -o "$OUT/et_scan.aarch64.o" 2>"$OUT/et.build.log"; then
    file "$OUT/et_scan.aarch64.o" | sed 's/^/    /'
    phase_end et PASS "et_scan.aarch64.o (compile only: no aarch64 libexecutorch.so to link)"
  else
    tail -30 "$OUT/et.build.log"
    phase_end et FAIL "cross-compile failed"
  fi
fi

# ---------------------------------------------------------------- summary
TOTAL=$(secs_since "$T_START")
echo
echo "== summary (outputs in $OUT)"
printf '  %s\n' "${RESULTS[@]}"
echo "  total ${TOTAL}s"
if ((FAILED)); then echo "aarch64 check: FAILED"; exit 1; fi
echo "aarch64 check: passed"
