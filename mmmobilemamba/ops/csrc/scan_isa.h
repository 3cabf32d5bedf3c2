// The scan kernels (scan_kernel.h) compiled once per instruction set, and
// the choice among the copies at run time.
//
// On x86-64 the kernels are compiled three times: for the baseline
// instruction set, for AVX2 + FMA and for AVX-512; the fastest one the
// running CPU supports is chosen at the first call, so a build needs no
// -march flag and runs on any x86-64 CPU. Other architectures (aarch64:
// NEON is its baseline) get one copy, vectorised for their baseline.
//
// Included once per binary by each binding: the torch extension
// (scan_cpu.cpp) and the runtime kernels (scan_native.h). The includer
// defines SCAN_PARALLEL_FOR first and has included <algorithm>, <bit>,
// <cmath>, <cstdint>, <string>, <stdexcept> and <vector>.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__)
#define SCAN_MULTI_ISA 1
#endif

#define SCAN_NS isa_base
#include "scan_kernel.h"
#undef SCAN_NS

#ifdef SCAN_MULTI_ISA
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SCAN_NS isa_avx2
#include "scan_kernel.h"
#undef SCAN_NS
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,fma,prefer-vector-width=512")
#define SCAN_NS isa_avx512
#include "scan_kernel.h"
#undef SCAN_NS
#pragma GCC pop_options
#endif

namespace scan_isa {

enum class Isa { base, avx2, avx512 };

inline Isa detect_isa() {
  Isa best = Isa::base;
#ifdef SCAN_MULTI_ISA
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
    best = Isa::avx512;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    best = Isa::avx2;
#endif
  // MMMOBILEMAMBA_SCAN_ISA=avx2|baseline picks a lower copy, so that the
  // copies a machine would not choose can be tested on it; asking for more
  // than the CPU has is an error.
  const char* env = std::getenv("MMMOBILEMAMBA_SCAN_ISA");
  if (env == nullptr || *env == '\0') return best;
  const std::string want(env);
  Isa asked;
  if (want == "avx512")
    asked = Isa::avx512;
  else if (want == "avx2")
    asked = Isa::avx2;
  else if (want == "baseline")
    asked = Isa::base;
  else
    throw std::invalid_argument("MMMOBILEMAMBA_SCAN_ISA must be avx512, avx2 or baseline, got '" +
                                want + "'");
  if (static_cast<int>(asked) > static_cast<int>(best))
    throw std::runtime_error("MMMOBILEMAMBA_SCAN_ISA=" + want +
                             " but this CPU supports at most " +
                             (best == Isa::avx512 ? "avx512" : best == Isa::avx2 ? "avx2" : "baseline"));
  return asked;
}

inline Isa isa() {
  static const Isa chosen = detect_isa();
  return chosen;
}

inline std::string isa_name() {
  switch (isa()) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace scan_isa

// Runs the statement (which names the kernel copy `ns`) with the copy
// chosen for this CPU.
#ifdef SCAN_MULTI_ISA
#define SCAN_ISA_CASES(...)                                             \
  case scan_isa::Isa::avx512: { namespace ns = isa_avx512; __VA_ARGS__; break; }  \
  case scan_isa::Isa::avx2: { namespace ns = isa_avx2; __VA_ARGS__; break; }
#else
#define SCAN_ISA_CASES(...)
#endif
#define SCAN_DISPATCH_ISA(...)                             \
  do {                                                     \
    switch (scan_isa::isa()) {                             \
      SCAN_ISA_CASES(__VA_ARGS__)                          \
      default: { namespace ns = isa_base; __VA_ARGS__; }   \
    }                                                      \
  } while (0)
