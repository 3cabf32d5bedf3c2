// The selective scan's forward for the runtimes: ONNX Runtime's custom-op
// library (ort_scan.cpp) and ExecuTorch's kernel library (et_scan.cpp).
// No ATen, no torch: plain pointers to contiguous fp32 tensors, the same
// kernels as the torch extension (scan_kernel.h via scan_isa.h).
//
// The operators are the ones the deploy forms export (SS2D's scan, and
// the scan followed by SS2D's LayerNorm and gate, norm_gate below): K
// directions (odd ones run backwards), one group of B/C, softplus on
// delta + bias, D summed over the directions, no gate:
//   u      (b, d, L)          delta  (b, K, d, L)
//   A      (K, d, N)          B, C   (b, K, N, L)
//   D      (K, d)             bias   (K, d)
//   y      (b, d, L)
//
// Threads: the binding passes the runtime's parallel-for (or none, to run
// the tasks in the calling thread). Tasks write disjoint rows of y, so the
// result does not depend on how they are split. Scans smaller than
// kMinParallelWork (default 0: none) run in the calling thread whatever the
// binding passes.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace scan_native {

// Runs fn(begin, end) over sub-ranges covering [0, n), maybe concurrently.
using RangeFn = std::function<void(int64_t, int64_t)>;
using ParallelFor = void (*)(void* ctx, int64_t n, const RangeFn& fn);

namespace detail {
struct Pool {
  ParallelFor run = nullptr;
  void* ctx = nullptr;
};
inline thread_local Pool pool;

template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t /*grain*/, const F& f) {
  if (end <= begin) return;
  if (pool.run == nullptr || end - begin == 1) {
    f(begin, end);
    return;
  }
  const RangeFn fn = [&](int64_t b, int64_t e) { f(begin + b, begin + e); };
  pool.run(pool.ctx, end - begin, fn);
}
}  // namespace detail

}  // namespace scan_native

#define SCAN_PARALLEL_FOR ::scan_native::detail::parallel_for
#include "scan_isa.h"

namespace scan_native {

struct Shape {
  int64_t batch, dim, length, K, N;
  // Steps of the recurrence: one per (sample, channel, time, direction,
  // state).
  int64_t work() const { return batch * dim * length * K * N; }
};

// Below this many recurrence steps a scan runs in the calling thread; by
// default every scan with more than one task is split. Measured on a
// 2-vCPU x86 VM: in a program that holds only the scan, with the pool
// asleep between runs (tools/analysis_tools/scan_parallel_cutoff.py), 2
// threads took 1.3-1.8x the 1-thread time below ~64k steps; but inside
// whole T2 programs, where the delegate before the scan leaves the pool
// awake, splitting every scan was as fast as or 2 % faster than keeping
// T2's scans serial (cutoffs 2^14 and 2^17, docs/deployment.md#native-threads).
// A build for a CPU where that differs may set
// -DMMMOBILEMAMBA_MIN_PARALLEL_WORK=N.
#ifndef MMMOBILEMAMBA_MIN_PARALLEL_WORK
#define MMMOBILEMAMBA_MIN_PARALLEL_WORK 0
#endif
inline constexpr int64_t kMinParallelWork = MMMOBILEMAMBA_MIN_PARALLEL_WORK;

// An empty string when the shapes fit the operator, else what is wrong.
inline std::string check(const Shape& s) {
  if (s.batch < 0 || s.dim <= 0 || s.length <= 0 || s.K <= 0 || s.N <= 0)
    return "selective_scan: every size must be positive (batch >= 0), got b=" +
           std::to_string(s.batch) + " d=" + std::to_string(s.dim) +
           " L=" + std::to_string(s.length) + " K=" + std::to_string(s.K) +
           " N=" + std::to_string(s.N);
  return "";
}

// y = scan(u, delta, ...) for contiguous fp32 tensors in the layouts above.
// D and bias may be null. `run` is used when the scan has at least
// `min_parallel_work` steps (the tests pass 0 to split every scan). Throws
// std::invalid_argument on bad shapes.
inline void forward(const Shape& s, const float* u, const float* delta,
                    const float* A, const float* B, const float* C,
                    const float* D, const float* bias, float* y,
                    ParallelFor run = nullptr, void* ctx = nullptr,
                    int64_t min_parallel_work = kMinParallelWork) {
  const std::string bad = check(s);
  if (!bad.empty()) throw std::invalid_argument(bad);
  if (s.batch == 0) return;
  if (s.work() < min_parallel_work) run = nullptr;
  std::vector<float> dsum;
  if (D != nullptr) {  // every direction reads the same u
    dsum.assign(D, D + s.dim);
    for (int64_t k = 1; k < s.K; ++k)
      for (int64_t c = 0; c < s.dim; ++c) dsum[c] += D[k * s.dim + c];
  }
  const Strides3 su{s.dim * s.length, s.length, 1};
  const Strides4 sdelta{s.K * s.dim * s.length, s.dim * s.length, s.length, 1};
  detail::pool = {run, ctx};
  struct Reset {
    ~Reset() { detail::pool = {}; }
  } reset;
  SCAN_DISPATCH_ISA({
    ns::Problem<float, float> p;
    p.batch = s.batch; p.dim = s.dim; p.length = s.length; p.K = s.K;
    p.G = 1; p.N = s.N; p.gd = s.dim; p.nbg = (s.dim + ns::CB - 1) / ns::CB;
    p.softplus = true;
    p.u = u; p.su = su; p.delta = delta; p.sdelta = sdelta;
    p.B = B; p.C = C; p.z = nullptr; p.sz = su;
    p.A = A; p.D = D ? dsum.data() : nullptr; p.bias = bias;
    ns::forward(p, y, su, static_cast<float*>(nullptr));
  });
}

// SS2D's epilogue, on the scan's output in place: a LayerNorm over the
// channels at each position (biased variance, as nn.LayerNorm), its affine
// weight and bias, then the gate silu(z):
//   y[c, l] = ((y[c, l] - mean_l) / sqrt(var_l + eps) * weight[c] + bias[c])
//             * silu(z[c, l])
// z (b, d, L) like y; weight, bias (d,) or null (1 and 0). Serial: at SS2D's
// sizes it is a few microseconds, less than waking a pool. In the exported
// graphs this replaces about 15 small nodes (transposes, reductions and
// elementwise operators) per SS2D.
// An empty string when eps fits the LayerNorm, else what is wrong.
inline std::string check_eps(float eps) {
  if (eps > 0.f && std::isfinite(eps)) return "";
  return "eps must be a positive finite number, got " + std::to_string(eps);
}

inline void norm_gate(const Shape& s, const float* z, const float* weight,
                      const float* bias, float eps, float* y) {
  std::string bad = check(s);
  if (bad.empty()) bad = check_eps(eps);
  if (!bad.empty()) throw std::invalid_argument("norm_gate: " + bad);
  std::vector<float> scratch(2 * s.length);
  SCAN_DISPATCH_ISA(ns::norm_gate(s.batch, s.dim, s.length, z, weight, bias,
                                  eps, y, scratch.data(),
                                  scratch.data() + s.length));
}

inline std::string isa_name() { return scan_isa::isa_name(); }

}  // namespace scan_native
