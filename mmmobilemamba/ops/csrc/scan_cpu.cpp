// The compiled CPU selective scan for PyTorch: forward and backward entry
// points over the kernels of scan_kernel.h (one copy per instruction set,
// chosen at run time: scan_isa.h).
//
// The Python side (mmmobilemamba/ops/scan/cpu.py) calls these as the 'cpp'
// row's kernels of the scan's custom operator, in the layouts listed in
// scan_kernel.h. The runtime kernels (ONNX Runtime, ExecuTorch) share the
// same math through scan_native.h.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

// ATen's thread pool runs the tasks (its thread count is torch's).
#define SCAN_PARALLEL_FOR at::parallel_for
#include "scan_isa.h"

namespace {

using namespace scan_isa;

const at::Tensor* opt(const std::optional<at::Tensor>& t) {
  return (t.has_value() && t->defined()) ? &*t : nullptr;
}

struct Shapes {
  int64_t batch, dim, length, K, G, N, gd, nbg;
};

// The inputs in what the kernels read: u, delta, z as given (any strides)
// in one dtype; B, C contiguous in it; A, bias contiguous and D summed over
// the directions (they share u), in the accumulation dtype. Conversions
// happen here, in C++, because at batch 1 each Python-side call costs
// about as much as a small scan.
struct Inputs {
  at::Tensor u, delta, A, B, C;
  std::optional<at::Tensor> D, z, bias;
};

Inputs prepare(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
               const at::Tensor& B, const at::Tensor& C,
               const std::optional<at::Tensor>& D,
               const std::optional<at::Tensor>& z,
               const std::optional<at::Tensor>& bias) {
  const auto dt = u.scalar_type();
  const auto acc = dt == at::kDouble ? at::kDouble : at::kFloat;
  Inputs in;
  in.u = u;
  in.delta = delta.to(dt);
  in.B = B.to(dt).contiguous();
  in.C = C.to(dt).contiguous();
  in.A = A.to(acc).contiguous();
  if (auto* t = opt(D)) in.D = (t->dim() == 2 ? t->to(acc).sum(0) : t->to(acc)).contiguous();
  if (auto* t = opt(z)) in.z = t->to(dt);
  if (auto* t = opt(bias)) in.bias = t->to(acc).contiguous();
  return in;
}

Shapes check(const Inputs& in, int64_t cb) {
  const at::Tensor &u = in.u, &delta = in.delta, &A = in.A, &B = in.B;
  TORCH_CHECK(u.device().is_cpu(), "scan_cpu: tensors must be on the CPU");
  TORCH_CHECK(u.dim() == 3 && delta.dim() == 4 && A.dim() == 3 && B.dim() == 5,
              "scan_cpu: unexpected ranks");
  TORCH_CHECK(at::isFloatingType(u.scalar_type()), "scan_cpu: u must be floating");
  Shapes s;
  s.batch = u.size(0);
  s.dim = u.size(1);
  s.length = u.size(2);
  s.K = delta.size(1);
  s.G = B.size(2);
  s.N = A.size(2);
  TORCH_CHECK(s.G > 0 && s.dim % s.G == 0, "scan_cpu: groups must divide dim");
  s.gd = s.dim / s.G;
  s.nbg = (s.gd + cb - 1) / cb;
  TORCH_CHECK(delta.sizes() == at::IntArrayRef({s.batch, s.K, s.dim, s.length}),
              "scan_cpu: delta shape");
  TORCH_CHECK(A.sizes() == at::IntArrayRef({s.K, s.dim, s.N}), "scan_cpu: A shape");
  TORCH_CHECK(B.sizes() == at::IntArrayRef({s.batch, s.K, s.G, s.N, s.length}) &&
                  in.C.sizes() == B.sizes(), "scan_cpu: B/C shape");
  if (in.z) TORCH_CHECK(in.z->sizes() == u.sizes(), "scan_cpu: z shape");
  if (in.D) TORCH_CHECK(in.D->numel() == s.dim, "scan_cpu: D must be (K, dim) or (dim,)");
  if (in.bias)
    TORCH_CHECK(in.bias->numel() == s.K * s.dim, "scan_cpu: bias must be (K, dim)");
  return s;
}

Strides3 strides3(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2)};
}

template <typename P, typename scalar_t, typename acc_t>
P make_problem(const Shapes& s, bool softplus, const Inputs& in) {
  P p;
  p.batch = s.batch; p.dim = s.dim; p.length = s.length; p.K = s.K;
  p.G = s.G; p.N = s.N; p.gd = s.gd; p.nbg = s.nbg; p.softplus = softplus;
  p.u = in.u.data_ptr<scalar_t>();
  p.su = strides3(in.u);
  p.delta = in.delta.data_ptr<scalar_t>();
  p.sdelta = {in.delta.stride(0), in.delta.stride(1), in.delta.stride(2),
              in.delta.stride(3)};
  p.B = in.B.data_ptr<scalar_t>();
  p.C = in.C.data_ptr<scalar_t>();
  p.z = in.z ? in.z->data_ptr<scalar_t>() : nullptr;
  p.sz = in.z ? strides3(*in.z) : p.su;
  p.A = in.A.data_ptr<acc_t>();
  p.D = in.D ? in.D->data_ptr<acc_t>() : nullptr;
  p.bias = in.bias ? in.bias->data_ptr<acc_t>() : nullptr;
  return p;
}

// y (b, d, L) in u's dtype and layout (empty_like: a channels-last map
// flattened to (b, d, L) gets a token-major y); last state of direction 0
// (b, d, N) in the accumulation dtype, or an empty tensor. D may be
// (K, d) (summed here) or (d,) (already summed).
std::vector<at::Tensor> scan_fwd(const at::Tensor& u_, const at::Tensor& delta_,
                                 const at::Tensor& A_, const at::Tensor& B_,
                                 const at::Tensor& C_,
                                 const std::optional<at::Tensor>& D_,
                                 const std::optional<at::Tensor>& z_,
                                 const std::optional<at::Tensor>& bias_,
                                 bool softplus, bool return_last_state) {
  const Inputs in = prepare(u_, delta_, A_, B_, C_, D_, z_, bias_);
  const Shapes s = check(in, isa_base::CB);
  at::Tensor y = at::empty_like(in.u);
  at::Tensor last = return_last_state
                        ? at::zeros({s.batch, s.dim, s.N}, in.A.options())
                        : at::empty({0}, in.A.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.u.scalar_type(), "scan_cpu_fwd", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        SCAN_DISPATCH_ISA({
          auto p = make_problem<ns::Problem<scalar_t, acc_t>, scalar_t, acc_t>(
              s, softplus, in);
          ns::forward(p, y.data_ptr<scalar_t>(), strides3(y),
                      return_last_state ? last.data_ptr<acc_t>() : nullptr);
        });
      });
  return {y, last};
}

// Gradients: du, d(delta), dz in the input dtype and in their inputs'
// layouts (dz empty without z); dA (K, d, N), dB / dC (b, K, G, N, L), dD
// (d,) (of the summed skip weight), d(bias) (K, d) in the accumulation
// dtype (dD / d(bias) empty when absent).
std::vector<at::Tensor> scan_bwd(const std::optional<at::Tensor>& gy_,
                                 const std::optional<at::Tensor>& g_last_,
                                 const at::Tensor& u_, const at::Tensor& delta_,
                                 const at::Tensor& A_, const at::Tensor& B_,
                                 const at::Tensor& C_,
                                 const std::optional<at::Tensor>& D_,
                                 const std::optional<at::Tensor>& z_,
                                 const std::optional<at::Tensor>& bias_,
                                 bool softplus) {
  const Inputs in = prepare(u_, delta_, A_, B_, C_, D_, z_, bias_);
  const Shapes s = check(in, isa_base::CB);
  at::Tensor gy;
  if (auto* t = opt(gy_)) {
    TORCH_CHECK(t->sizes() == in.u.sizes(), "scan_cpu: grad of y shape");
    gy = t->to(in.u.scalar_type());
  }
  at::Tensor g_last;
  if (auto* t = opt(g_last_)) {
    TORCH_CHECK(t->numel() == s.batch * s.dim * s.N,
                "scan_cpu: grad of the last state");
    g_last = t->to(in.A.scalar_type()).contiguous();
  }
  const auto ao = in.A.options();
  at::Tensor gu = at::empty_like(in.u);
  at::Tensor gdelta = at::empty_like(in.delta);
  at::Tensor gz = in.z ? at::empty_like(*in.z) : at::empty({0}, in.u.options());
  at::Tensor gA_part = at::empty({s.batch, s.K, s.dim, s.N}, ao);
  at::Tensor gB_part = at::empty({s.batch, s.K, s.G, s.nbg, s.N, s.length}, ao);
  at::Tensor gC_part = at::empty_like(gB_part);
  at::Tensor gD_part = at::empty({s.batch, s.dim}, ao);
  at::Tensor gbias_part = at::empty({s.batch, s.K, s.dim}, ao);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.u.scalar_type(), "scan_cpu_bwd", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        SCAN_DISPATCH_ISA({
          auto p = make_problem<ns::Problem<scalar_t, acc_t>, scalar_t, acc_t>(
              s, softplus, in);
          ns::Grads g{gu.data_ptr(), gdelta.data_ptr(),
                      in.z ? gz.data_ptr() : nullptr,
                      strides3(gu),
                      in.z ? strides3(gz) : strides3(gu),
                      {gdelta.stride(0), gdelta.stride(1), gdelta.stride(2),
                       gdelta.stride(3)},
                      gA_part.data_ptr(), gB_part.data_ptr(), gC_part.data_ptr(),
                      gD_part.data_ptr(), gbias_part.data_ptr()};
          ns::backward(p, gy.defined() ? gy.data_ptr<scalar_t>() : nullptr,
                       gy.defined() ? strides3(gy) : strides3(gu),
                       g_last.defined() ? g_last.data_ptr<acc_t>() : nullptr, g);
        });
      });
  // Serial sums of the partials, in a fixed order: the same result for any
  // number of threads.
  at::Tensor gA = at::zeros({s.K, s.dim, s.N}, ao);
  at::Tensor gB = at::zeros({s.batch, s.K, s.G, s.N, s.length}, ao);
  at::Tensor gC = at::zeros_like(gB);
  at::Tensor gD = in.D ? at::zeros({s.dim}, ao) : at::empty({0}, ao);
  at::Tensor gbias = in.bias ? at::zeros({s.K, s.dim}, ao) : at::empty({0}, ao);
  AT_DISPATCH_FLOATING_TYPES(in.A.scalar_type(), "scan_cpu_bwd_sum", [&] {
    const int64_t nA = s.K * s.dim * s.N, nb = s.K * s.dim;
    const scalar_t* pa = gA_part.data_ptr<scalar_t>();
    scalar_t* ga = gA.data_ptr<scalar_t>();
    for (int64_t b = 0; b < s.batch; ++b)
      for (int64_t i = 0; i < nA; ++i) ga[i] += pa[b * nA + i];
    if (in.D) {
      const scalar_t* pd = gD_part.data_ptr<scalar_t>();
      scalar_t* gd = gD.data_ptr<scalar_t>();
      for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t i = 0; i < s.dim; ++i) gd[i] += pd[b * s.dim + i];
    }
    if (in.bias) {
      const scalar_t* pb = gbias_part.data_ptr<scalar_t>();
      scalar_t* gb = gbias.data_ptr<scalar_t>();
      for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t i = 0; i < nb; ++i) gb[i] += pb[b * nb + i];
    }
    const int64_t NL = s.N * s.length;
    for (auto [part, full] : {std::pair{&gB_part, &gB}, std::pair{&gC_part, &gC}}) {
      const scalar_t* pp = part->data_ptr<scalar_t>();
      scalar_t* pf = full->data_ptr<scalar_t>();
      const int64_t rows = s.batch * s.K * s.G;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t blk = 0; blk < s.nbg; ++blk) {
          const scalar_t* src = pp + (r * s.nbg + blk) * NL;
          scalar_t* dst = pf + r * NL;
          for (int64_t i = 0; i < NL; ++i) dst[i] += src[i];
        }
    }
  });
  return {gu, gdelta, gA, gB, gC, gD, gz, gbias};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Compiled CPU selective scan (forward and backward).";
  m.def("scan_fwd", &scan_fwd, "selective scan forward");
  m.def("scan_bwd", &scan_bwd, "selective scan backward");
  m.def("isa", &isa_name, "instruction set of the kernel copy in use");
  m.def("scratch_bytes",
        [](int64_t L, int64_t N, int64_t K, bool z, bool backward, bool fp64) {
          return isa_base::thread_scratch_bytes(L, N, K, z, backward,
                                                fp64 ? 8 : 4);
        },
        "bytes of scratch one thread allocates for a problem of length L "
        "(outside PyTorch's allocator, so not seen by its profiler)");
  m.attr("CHANNEL_BLOCK") = isa_base::CB;
  m.attr("TILE") = isa_base::TT;
}
