// The selective scan's forward for the runtimes: ONNX Runtime's custom-op
// library (ort_scan.cpp) and ExecuTorch's kernel library (et_scan.cpp).
// No ATen, no torch: plain pointers to contiguous fp32 tensors, the same
// kernels as the torch extension (scan_kernel.h via scan_isa.h).
//
// The operator is the one the deploy forms export (SS2D's scan): K
// directions (odd ones run backwards), one group of B/C, softplus on
// delta + bias, D summed over the directions, no gate:
//   u      (b, d, L)          delta  (b, K, d, L)
//   A      (K, d, N)          B, C   (b, K, N, L)
//   D      (K, d)             bias   (K, d)
//   y      (b, d, L)
//
// Threads: the binding passes the runtime's parallel-for (or none, to run
// the tasks in the calling thread). Tasks write disjoint rows of y, so the
// result does not depend on how they are split.
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
};

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
// D and bias may be null. Throws std::invalid_argument on bad shapes.
inline void forward(const Shape& s, const float* u, const float* delta,
                    const float* A, const float* B, const float* C,
                    const float* D, const float* bias, float* y,
                    ParallelFor run = nullptr, void* ctx = nullptr) {
  const std::string bad = check(s);
  if (!bad.empty()) throw std::invalid_argument(bad);
  if (s.batch == 0) return;
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

inline std::string isa_name() { return scan_isa::isa_name(); }

}  // namespace scan_native
