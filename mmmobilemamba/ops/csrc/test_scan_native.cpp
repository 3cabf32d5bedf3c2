// Standalone test of scan_native::forward (the runtimes' scan entry point)
// against a plain sequential double-precision reference. No dependencies
// beyond the C++ standard library, so that it builds with a cross compiler
// and runs under an emulator (tools/deployment/test_aarch64.sh) as well as
// natively (tests/ops/test_scan_native_cpp.py):
//
//   g++ -O3 -std=c++20 -fopenmp-simd -pthread -I mmmobilemamba/ops/csrc
//       mmmobilemamba/ops/csrc/test_scan_native.cpp -o test_scan_native
//   ./test_scan_native            # MMMOBILEMAMBA_SCAN_ISA=baseline|avx2 too
//
// Prints one line per group of cases and a last line "N passed, M failed";
// the exit status is 0 only when nothing failed.
#include "scan_native.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <thread>

namespace {

// --- inputs ----------------------------------------------------------------

// A small deterministic generator (the same numbers on every platform and
// standard library, unlike std::normal_distribution).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  double range(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Roughly standard normal: sum of four uniforms, scaled.
  double normal() {
    double t = 0;
    for (int i = 0; i < 4; ++i) t += uniform();
    return (t - 2.0) * 1.7320508075688772;
  }
};

struct Case {
  int64_t batch, dim, length, K, N;
  bool with_D = true, with_bias = true;
  double delta_lo = -3, delta_hi = 1.5;  // delta + bias in about this range
  double a_lo = -2, a_hi = -0.05;        // A in [a_lo, a_hi)
  uint64_t seed = 1;
};

struct Inputs {
  scan_native::Shape shape;
  std::vector<float> u, delta, A, B, C, D, bias;
  const float* Dp() const { return D.empty() ? nullptr : D.data(); }
  const float* biasp() const { return bias.empty() ? nullptr : bias.data(); }
};

Inputs make_inputs(const Case& c) {
  Rng r(c.seed);
  Inputs in;
  in.shape = {c.batch, c.dim, c.length, c.K, c.N};
  const int64_t b = c.batch, d = c.dim, L = c.length, K = c.K, N = c.N;
  in.u.resize(b * d * L);
  for (auto& v : in.u) v = float(r.normal());
  in.delta.resize(b * K * d * L);
  for (auto& v : in.delta) v = float(r.range(c.delta_lo, c.delta_hi));
  in.A.resize(K * d * N);
  for (auto& v : in.A) v = float(r.range(c.a_lo, c.a_hi));
  in.B.resize(b * K * N * L);
  for (auto& v : in.B) v = float(r.normal());
  in.C.resize(b * K * N * L);
  for (auto& v : in.C) v = float(r.normal());
  if (c.with_D) {
    in.D.resize(K * d);
    for (auto& v : in.D) v = float(r.normal());
  }
  if (c.with_bias) {
    in.bias.resize(K * d);
    for (auto& v : in.bias) v = float(r.range(-0.5, 0.5));
  }
  return in;
}

// --- reference -------------------------------------------------------------

double softplus_ref(double s) { return s > 20 ? s : std::log1p(std::exp(s)); }

// The operator, written out sequentially in double precision.
std::vector<double> reference(const Inputs& in) {
  const auto& s = in.shape;
  const int64_t b = s.batch, d = s.dim, L = s.length, K = s.K, N = s.N;
  std::vector<double> y(b * d * L, 0.0), h(N);
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t c = 0; c < d; ++c) {
      const float* u = &in.u[(bi * d + c) * L];
      double* yr = &y[(bi * d + c) * L];
      for (int64_t k = 0; k < K; ++k) {
        const float* dl = &in.delta[((bi * K + k) * d + c) * L];
        const float* A = &in.A[(k * d + c) * N];
        const float* B = &in.B[(bi * K + k) * N * L];
        const float* C = &in.C[(bi * K + k) * N * L];
        const double bias = in.bias.empty() ? 0.0 : in.bias[k * d + c];
        std::fill(h.begin(), h.end(), 0.0);
        for (int64_t i = 0; i < L; ++i) {
          const int64_t t = (k & 1) ? L - 1 - i : i;  // odd k: backwards
          const double dt = softplus_ref(double(dl[t]) + bias);
          for (int64_t n = 0; n < N; ++n) {
            h[n] = std::exp(dt * A[n]) * h[n] + dt * u[t] * double(B[n * L + t]);
            yr[t] += h[n] * double(C[n * L + t]);
          }
        }
      }
      if (!in.D.empty()) {
        double dsum = 0;
        for (int64_t k = 0; k < K; ++k) dsum += in.D[k * d + c];
        for (int64_t t = 0; t < L; ++t) yr[t] += dsum * u[t];
      }
    }
  return y;
}

// --- the kernel, serial and threaded ---------------------------------------

// A ParallelFor over std::thread: the range is cut into `chunks` pieces of
// (nearly) equal size, run by up to `threads` threads (a piece per thread
// at a time, so the split and the threads' interleaving both vary).
struct ThreadPoolCfg {
  int threads;
  int64_t chunks;  // 0: one per thread
  int calls = 0;   // how often the kernel asked for parallel work
};

void run_threads(void* ctx, int64_t n, const scan_native::RangeFn& fn) {
  auto* cfg = static_cast<ThreadPoolCfg*>(ctx);
  ++cfg->calls;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(n, cfg->chunks ? cfg->chunks : cfg->threads));
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(cfg->threads);
  for (int w = 0; w < cfg->threads; ++w)
    pool.emplace_back([&, w] {
      try {
        for (int64_t i = w; i < chunks; i += cfg->threads)
          fn(n * i / chunks, n * (i + 1) / chunks);
      } catch (...) {
        errors[w] = std::current_exception();
      }
    });
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// With a pool, every scan is split (min_parallel_work 0) unless the caller
// passes the kernel's own cutoff.
std::vector<float> run_kernel(const Inputs& in, ThreadPoolCfg* cfg = nullptr,
                              int64_t min_parallel_work = 0) {
  const auto& s = in.shape;
  // NaN-filled: every element of y must be written.
  std::vector<float> y(std::max<int64_t>(0, s.batch) * s.dim * s.length,
                       std::numeric_limits<float>::quiet_NaN());
  scan_native::forward(s, in.u.data(), in.delta.data(), in.A.data(), in.B.data(),
                       in.C.data(), in.Dp(), in.biasp(), y.data(),
                       cfg ? run_threads : nullptr, cfg, min_parallel_work);
  return y;
}

// Largest |y - ref| relative to max |ref| (infinite if y has a non-finite).
double rel_error(const std::vector<float>& y, const std::vector<double>& ref) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (!std::isfinite(y[i])) return std::numeric_limits<double>::infinity();
    err = std::max(err, std::abs(double(y[i]) - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return err / std::max(scale, 1e-30);
}

// --- bookkeeping -----------------------------------------------------------

constexpr double kTol = 1e-5;
int g_passed = 0, g_failed = 0;

struct Group {
  const char* name;
  int passed = 0, failed = 0;
  double worst = 0;
  explicit Group(const char* n) : name(n) {}
  void check(bool ok, const std::string& what, double err = 0) {
    worst = std::max(worst, err);
    if (ok) {
      ++passed;
      ++g_passed;
    } else {
      ++failed;
      ++g_failed;
      std::printf("  FAIL %s: %s (rel err %.3g)\n", name, what.c_str(), err);
    }
  }
  void report(const char* extra = "") const {
    std::printf("%-34s %4d passed, %d failed, worst rel err %.2e%s\n", name,
                passed, failed, worst, extra);
  }
};

std::string describe(const Case& c) {
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "b=%" PRId64 " d=%" PRId64 " L=%" PRId64 " K=%" PRId64 " N=%" PRId64
                " D=%d bias=%d seed=%" PRIu64,
                c.batch, c.dim, c.length, c.K, c.N, int(c.with_D), int(c.with_bias), c.seed);
  return buf;
}

void check_case(Group& g, const Case& c) {
  try {
    const Inputs in = make_inputs(c);
    const double err = rel_error(run_kernel(in), reference(in));
    g.check(err <= kTol, describe(c), err);
  } catch (const std::exception& e) {
    g.check(false, describe(c) + " threw " + e.what());
  }
}

// --- groups ----------------------------------------------------------------

const int64_t kDims[] = {1, 7, 33, 37, 100};
const int64_t kLengths[] = {1, 2, 9, 53, 65, 130};
const int64_t kStates[] = {1, 3, 16};

void grid() {
  Group g("grid K=2 (d x L x N x b x D)");
  uint64_t seed = 100;
  for (int64_t d : kDims)
    for (int64_t L : kLengths)
      for (int64_t N : kStates)
        for (int64_t b : {1, 2})
          for (bool with_D : {true, false}) {
            Case c{b, d, L, 2, N};
            c.with_D = with_D;
            c.seed = ++seed;
            check_case(g, c);
          }
  g.report();
}

void directions() {
  Group g("directions K=1,3,4, no bias");
  uint64_t seed = 1000;
  for (int64_t K : {1, 3, 4})
    for (int64_t d : {7, 37})
      for (int64_t L : {1, 9, 65})
        for (bool with_bias : {true, false}) {
          Case c{2, d, L, K, 3};
          c.with_bias = with_bias;
          c.seed = ++seed;
          check_case(g, c);
        }
  g.report();
}

void extremes() {
  // softplus above its threshold (delta + bias > 20) and far below 0, and
  // decays that underflow (dt * A < -87).
  Group g("extremes (softplus >20, underflow)");
  uint64_t seed = 2000;
  const struct { double dlo, dhi, alo, ahi; } ranges[] = {
      {15, 30, -2, -0.05},    // around and above the softplus threshold
      {-30, -10, -2, -0.05},  // dt tiny
      {2, 25, -60, -5},       // exp(dt * A) underflows to 0
      {-8, 8, -1e-3, 0},      // almost no decay: the state accumulates
  };
  for (const auto& r : ranges)
    for (int64_t d : {7, 33})
      for (int64_t L : {9, 130}) {
        Case c{2, d, L, 2, 16};
        c.delta_lo = r.dlo;
        c.delta_hi = r.dhi;
        c.a_lo = r.alo;
        c.a_hi = r.ahi;
        c.seed = ++seed;
        check_case(g, c);
      }
  g.report();
}

void threads() {
  Group g("threads (bit-identical to serial)");
  uint64_t seed = 3000;
  int calls = 0;
  const struct { int threads; int64_t chunks; } pools[] = {{2, 0}, {3, 0}, {4, 64}, {8, 5}};
  for (int64_t d : {1, 33, 100})
    for (int64_t L : {2, 65, 130})
      for (int64_t b : {1, 2}) {
        Case c{b, d, L, 2, 16};
        c.seed = ++seed;
        const Inputs in = make_inputs(c);
        const std::vector<float> serial = run_kernel(in);
        const double err = rel_error(serial, reference(in));
        for (const auto& p : pools) {
          ThreadPoolCfg cfg{p.threads, p.chunks};
          std::string what = describe(c) + " threads=" + std::to_string(p.threads) +
                             " chunks=" + std::to_string(p.chunks);
          try {
            const std::vector<float> par = run_kernel(in, &cfg);
            calls += cfg.calls;
            const bool same = std::memcmp(par.data(), serial.data(), par.size() * sizeof(float)) == 0;
            g.check(same && err <= kTol, what + (same ? "" : " differs from serial"), err);
          } catch (const std::exception& e) {
            g.check(false, what + " threw " + e.what());
          }
        }
      }
  // More than one task (d > 32 or b > 1) must reach the pool.
  g.check(calls > 0, "the kernel never called the ParallelFor");
  char extra[64];
  std::snprintf(extra, sizeof extra, " (%d parallel calls)", calls);
  g.report(extra);
}

// The parallel cutoff (kMinParallelWork's mechanism, here at 2^14 steps):
// scans below it stay in the calling thread, larger ones reach the pool;
// both agree with serial. The default cutoff reaches the pool with any
// scan of more than one task.
void cutoff() {
  Group g("parallel cutoff (min_parallel_work)");
  const int64_t k = 2, n = 4, d = 67, cut = int64_t(1) << 14;
  for (const int64_t cutoff : {cut, scan_native::kMinParallelWork})
    for (const bool large : {false, true}) {
      // the smallest length at or past the cutoff, or one below it
      int64_t L = cut / (d * k * n) + 1;
      if (!large) L /= 2;
      Case c{1, d, L, k, n};
      c.seed = large ? 4001 : 4002;
      const Inputs in = make_inputs(c);
      const std::vector<float> serial = run_kernel(in);
      ThreadPoolCfg cfg{2, 0};
      const std::vector<float> par = run_kernel(in, &cfg, cutoff);
      const bool same = std::memcmp(par.data(), serial.data(), par.size() * sizeof(float)) == 0;
      g.check(same, describe(c) + " differs from serial");
      const bool split = large || cutoff < in.shape.work();
      g.check((cfg.calls > 0) == split,
              describe(c) + " cutoff " + std::to_string(cutoff) +
                  (split ? ": stayed serial" : ": was split") + " (work " +
                  std::to_string(in.shape.work()) + ")");
    }
  g.report();
}

// SS2D's epilogue against a double-precision LayerNorm and gate, at odd
// sizes, with and without the affine weight and bias, with large |z|.
void norm_gate() {
  Group g("norm_gate (LayerNorm over d, silu)");
  uint64_t seed = 5000;
  for (int64_t b : {1, 2})
    for (int64_t d : {1, 3, 37, 224})
      for (int64_t L : {1, 9, 17, 144})
        for (const bool affine : {false, true}) {
          Rng rng(++seed);
          const int64_t n = b * d * L;
          std::vector<float> y(n), z(n), w(d), bb(d);
          for (auto& v : y) v = float(3 * rng.normal() + 1);
          for (auto& v : z) v = float(40 * rng.normal());  // both tails
          for (auto& v : w) v = float(rng.range(0.5, 1.5));
          for (auto& v : bb) v = float(rng.normal());
          std::vector<double> ref(n);
          for (int64_t i = 0; i < b; ++i)
            for (int64_t l = 0; l < L; ++l) {
              double m = 0, var = 0;
              for (int64_t c = 0; c < d; ++c) m += y[(i * d + c) * L + l];
              m /= double(d);
              for (int64_t c = 0; c < d; ++c) {
                const double t = y[(i * d + c) * L + l] - m;
                var += t * t;
              }
              const double r = 1 / std::sqrt(var / double(d) + 1e-5);
              for (int64_t c = 0; c < d; ++c) {
                const int64_t k = (i * d + c) * L + l;
                const double zz = z[k];
                const double t = (y[k] - m) * r * (affine ? w[c] : 1.0) + (affine ? bb[c] : 0.0);
                ref[k] = t * zz / (1 + std::exp(-zz));
              }
            }
          scan_native::norm_gate({b, d, L, 2, 1}, z.data(), affine ? w.data() : nullptr,
                                 affine ? bb.data() : nullptr, 1e-5f, y.data());
          double err = 0, scale = 0;
          for (int64_t k = 0; k < n; ++k) {
            err = std::max(err, std::isfinite(y[k]) ? std::abs(y[k] - ref[k]) : INFINITY);
            scale = std::max(scale, std::abs(ref[k]));
          }
          err /= std::max(scale, 1e-30);
          char what[96];
          std::snprintf(what, sizeof what, "b=%" PRId64 " d=%" PRId64 " L=%" PRId64 " affine=%d",
                        b, d, L, int(affine));
          g.check(err <= kTol, what, err);
        }
  for (const float eps : {0.f, -1.f, NAN, INFINITY}) {
    bool threw = false;
    float y = 1, z = 1;
    try {
      scan_native::norm_gate({1, 1, 1, 2, 1}, &z, nullptr, nullptr, eps, &y);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    g.check(threw, "eps " + std::to_string(eps) + " did not throw");
  }
  g.report();
}

void bad_shapes() {
  Group g("bad shapes -> std::invalid_argument");
  const scan_native::Shape bad[] = {
      {1, 0, 9, 2, 3}, {1, 7, 0, 2, 3}, {1, 7, 9, 0, 3},
      {1, 7, 9, 2, 0}, {-1, 7, 9, 2, 3}, {1, -7, 9, 2, 3},
  };
  float dummy[4] = {0, 0, 0, 0};
  for (const auto& s : bad) {
    const std::string what = "b=" + std::to_string(s.batch) + " d=" + std::to_string(s.dim) +
                             " L=" + std::to_string(s.length) + " K=" + std::to_string(s.K) +
                             " N=" + std::to_string(s.N);
    bool threw = false;
    try {
      scan_native::forward(s, dummy, dummy, dummy, dummy, dummy, nullptr, nullptr, dummy);
    } catch (const std::invalid_argument&) {
      threw = true;
    } catch (...) {
    }
    g.check(threw, what + " did not throw std::invalid_argument");
    g.check(!scan_native::check(s).empty(), what + ": check() found nothing wrong");
  }
  // An empty batch is valid and writes nothing.
  float y[1] = {42.f};
  bool ok = true;
  try {
    scan_native::forward({0, 7, 9, 2, 3}, dummy, dummy, dummy, dummy, dummy, dummy, dummy, y);
  } catch (...) {
    ok = false;
  }
  g.check(ok && y[0] == 42.f, "batch 0 threw or wrote");
  g.report();
}

}  // namespace

int main() {
  std::string isa;
  try {
    isa = scan_native::isa_name();
  } catch (const std::exception& e) {
    std::printf("instruction set: %s\n0 passed, 1 failed\n", e.what());
    return 1;
  }
  std::printf("scan_native test, instruction set: %s\n", isa.c_str());
  grid();
  directions();
  extremes();
  threads();
  cutoff();
  norm_gate();
  bad_shapes();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
