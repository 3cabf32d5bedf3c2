// ExecuTorch kernel library: the operators
// mmmobilemamba::selective_scan_native.out (SS2D's scan) and
// mmmobilemamba::selective_scan_native.gated_out (the scan, then SS2D's
// LayerNorm and gate), exported by the 'xnnpack-native' deploy target.
// The math is scan_native.h; this file
// checks the arguments, reports errors through the KernelRuntimeContext
// (ExecuTorch kernels do not throw) and hands the scan ExecuTorch's
// threadpool.
//
// Built against the executorch wheel's headers, linked to its
// libexecutorch.so (the kernel registry) and libexecutorch_threadpool.so
// (mmmobilemamba/deploy/native/executorch.py). Loading the library
// (dlopen / ctypes.CDLL with RTLD_GLOBAL) registers the kernel through the
// static initialiser at the end of this file.

#include <cinttypes>
#include <exception>
#include <string>

#include <executorch/extension/kernel_util/make_boxed_from_unboxed_functor.h>
#include <executorch/runtime/core/exec_aten/util/tensor_util.h>
#include <executorch/runtime/kernel/kernel_includes.h>
#ifdef ET_USE_THREADPOOL
#include <executorch/runtime/kernel/thread_parallel_interface.h>
#endif

#include "scan_native.h"

namespace mmmobilemamba_et {

using executorch::aten::ScalarType;
using executorch::aten::Tensor;
using executorch::runtime::Error;
using executorch::runtime::KernelRuntimeContext;

namespace {

#ifdef ET_USE_THREADPOOL
// scan_native's ParallelFor on ExecuTorch's threadpool (the one XNNPACK
// uses; its size follows _unsafe_reset_threadpool).
void et_parallel_for(void* /*ctx*/, int64_t n, const scan_native::RangeFn& fn) {
  executorch::extension::parallel_for(
      0, n, 1, [&fn](int64_t begin, int64_t end) { fn(begin, end); });
}
constexpr scan_native::ParallelFor kParallelFor = &et_parallel_for;
#else
constexpr scan_native::ParallelFor kParallelFor = nullptr;
#endif

// True when `t` is a contiguous fp32 tensor of the sizes `want`; else logs
// what is wrong with input `name` and returns false.
bool check_tensor(const Tensor& t, const char* name,
                  std::initializer_list<int64_t> want) {
  if (t.scalar_type() != ScalarType::Float) {
    ET_LOG(Error, "selective_scan_native: %s must be float32, got dtype %d",
           name, static_cast<int>(t.scalar_type()));
    return false;
  }
  bool fits = t.dim() == static_cast<ssize_t>(want.size());
  if (fits) {
    int64_t i = 0;
    for (int64_t w : want) fits = fits && t.size(i++) == w;
  }
  if (!fits) {
    std::string got, exp;
    for (ssize_t i = 0; i < t.dim(); ++i)
      got += (i ? ", " : "") + std::to_string(t.size(i));
    int64_t i = 0;
    for (int64_t w : want) exp += (i++ ? ", " : "") + std::to_string(w);
    ET_LOG(Error, "selective_scan_native: %s must be (%s), got (%s)", name,
           exp.c_str(), got.c_str());
    return false;
  }
  if (!executorch::runtime::tensor_is_contiguous(t)) {
    ET_LOG(Error, "selective_scan_native: %s must be contiguous", name);
    return false;
  }
  return true;
}

// Checks the scan's inputs and out, runs the scan (and, with z, the
// epilogue). Returns out; failures go through ctx.
Tensor& scan(KernelRuntimeContext& ctx, const Tensor& u, const Tensor& delta,
             const Tensor& A, const Tensor& B, const Tensor& C, const Tensor& D,
             const Tensor& bias, const Tensor* z, const Tensor* norm_weight,
             const Tensor* norm_bias, double eps, Tensor& out) {
  ET_KERNEL_CHECK_MSG(ctx, u.dim() == 3, InvalidArgument, out,
                      "selective_scan_native: u must be (b, d, L), got %zd "
                      "dims", static_cast<ssize_t>(u.dim()));
  ET_KERNEL_CHECK_MSG(ctx, delta.dim() == 4, InvalidArgument, out,
                      "selective_scan_native: delta must be (b, K, d, L), "
                      "got %zd dims", static_cast<ssize_t>(delta.dim()));
  ET_KERNEL_CHECK_MSG(ctx, A.dim() == 3, InvalidArgument, out,
                      "selective_scan_native: A must be (K, d, N), got %zd "
                      "dims", static_cast<ssize_t>(A.dim()));
  const scan_native::Shape s{u.size(0), u.size(1), u.size(2), delta.size(1),
                             A.size(2)};
  bool ok = check_tensor(u, "u", {s.batch, s.dim, s.length}) &&
            check_tensor(delta, "delta", {s.batch, s.K, s.dim, s.length}) &&
            check_tensor(A, "A", {s.K, s.dim, s.N}) &&
            check_tensor(B, "B", {s.batch, s.K, s.N, s.length}) &&
            check_tensor(C, "C", {s.batch, s.K, s.N, s.length}) &&
            check_tensor(D, "D", {s.K, s.dim}) &&
            check_tensor(bias, "bias", {s.K, s.dim});
  if (ok && z != nullptr)
    ok = check_tensor(*z, "z", {s.batch, s.dim, s.length}) &&
         check_tensor(*norm_weight, "norm_weight", {s.dim}) &&
         check_tensor(*norm_bias, "norm_bias", {s.dim});
  ET_KERNEL_CHECK(ctx, ok, InvalidArgument, out);
  // the planned output has u's sizes already; a dynamic one is resized
  ET_KERNEL_CHECK_MSG(
      ctx, executorch::runtime::resize_tensor(out, u.sizes()) == Error::Ok,
      InvalidArgument, out,
      "selective_scan_native: cannot resize out to u's sizes");
  ET_KERNEL_CHECK_MSG(ctx, check_tensor(out, "out", {s.batch, s.dim, s.length}),
                      InvalidArgument, out,
                      "selective_scan_native: bad out tensor");
  try {
    float* y = out.mutable_data_ptr<float>();
    scan_native::forward(s, u.const_data_ptr<float>(),
                         delta.const_data_ptr<float>(),
                         A.const_data_ptr<float>(), B.const_data_ptr<float>(),
                         C.const_data_ptr<float>(), D.const_data_ptr<float>(),
                         bias.const_data_ptr<float>(), y, kParallelFor,
                         nullptr);
    if (z != nullptr)
      scan_native::norm_gate(s, z->const_data_ptr<float>(),
                             norm_weight->const_data_ptr<float>(),
                             norm_bias->const_data_ptr<float>(),
                             static_cast<float>(eps), y);
  } catch (const std::exception& e) {
    ET_LOG(Error, "selective_scan_native: %s", e.what());
    ctx.fail(Error::InvalidArgument);
  }
  return out;
}

}  // namespace

Tensor& selective_scan_native_out(KernelRuntimeContext& ctx, const Tensor& u,
                                  const Tensor& delta, const Tensor& A,
                                  const Tensor& B, const Tensor& C,
                                  const Tensor& D, const Tensor& bias,
                                  Tensor& out) {
  return scan(ctx, u, delta, A, B, C, D, bias, nullptr, nullptr, nullptr, 0.,
              out);
}

Tensor& selective_scan_native_gated_out(
    KernelRuntimeContext& ctx, const Tensor& u, const Tensor& delta,
    const Tensor& A, const Tensor& B, const Tensor& C, const Tensor& D,
    const Tensor& bias, const Tensor& z, const Tensor& norm_weight,
    const Tensor& norm_bias, double eps, Tensor& out) {
  return scan(ctx, u, delta, A, B, C, D, bias, &z, &norm_weight, &norm_bias,
              eps, out);
}

}  // namespace mmmobilemamba_et

// Registered when the library is loaded.
EXECUTORCH_LIBRARY(mmmobilemamba, "selective_scan_native.out",
                   mmmobilemamba_et::selective_scan_native_out);
EXECUTORCH_LIBRARY(mmmobilemamba, "selective_scan_native.gated_out",
                   mmmobilemamba_et::selective_scan_native_gated_out);

// Which instruction set the scan runs with (for reports; C linkage so that
// ctypes can call it).
extern "C" __attribute__((visibility("default"))) const char*
mmmobilemamba_et_scan_isa() {
  static const std::string name = scan_native::isa_name();
  return name.c_str();
}
