// Depthwise 2-D convolution for inference on channels-last CPU tensors.
//
// At batch 1 MobileMamba's depthwise convolutions run on maps of 2x2 to
// 24x24 pixels, where oneDNN spends about 30 us per call setting up its
// primitive and reordering, for work of a few microseconds. This kernel
// walks the output rows in channels-last order; for each output pixel it
// accumulates the k*k taps over a contiguous run of channels, so the inner
// loop is a vectorised multiply-add over C. The weights are transposed once
// per call to (kh, kw, C) so that loop reads them contiguously too.
//
// Registered as torch.ops.mmmobilemamba.depthwise_conv2d (CPU, float32, no
// autograd: the Python side uses it only when no gradient is needed and
// falls back to F.conv2d otherwise; the fake implementation is registered
// there). The loop is compiled for AVX-512, AVX2 + FMA and the baseline, and
// the copy the CPU supports is chosen when the library loads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DW_TARGETS \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DW_TARGETS
#endif

struct Geometry {
  int64_t H, W, C, OH, OW, KH, KW, SH, SW, PH, PW;
  int64_t xs_h, xs_w;  // input strides of a row and a pixel (channels: 1)
};

// Output rows [row_begin, row_end) of one sample (row = oh). The output
// pixel's C values are the accumulators (they stay in L1 across the taps).
DW_TARGETS void dw_rows(const float* __restrict x, const float* __restrict wt,
                        const float* __restrict bias, float* __restrict y,
                        const Geometry g, int64_t row_begin, int64_t row_end) {
  const int64_t C = g.C;
  for (int64_t oh = row_begin; oh < row_end; ++oh) {
    for (int64_t ow = 0; ow < g.OW; ++ow) {
      float* __restrict out = y + (oh * g.OW + ow) * C;
      if (bias) {
        for (int64_t c = 0; c < C; ++c) out[c] = bias[c];
      } else {
        for (int64_t c = 0; c < C; ++c) out[c] = 0.f;
      }
      for (int64_t i = 0; i < g.KH; ++i) {
        const int64_t ih = oh * g.SH - g.PH + i;
        if (ih < 0 || ih >= g.H) continue;
        for (int64_t j = 0; j < g.KW; ++j) {
          const int64_t iw = ow * g.SW - g.PW + j;
          if (iw < 0 || iw >= g.W) continue;
          const float* __restrict in = x + ih * g.xs_h + iw * g.xs_w;
          const float* __restrict w = wt + (i * g.KW + j) * C;
          for (int64_t c = 0; c < C; ++c) out[c] += in[c] * w[c];
        }
      }
    }
  }
}

at::Tensor depthwise_conv2d(const at::Tensor& input, const at::Tensor& weight,
                            const c10::optional<at::Tensor>& bias,
                            at::IntArrayRef stride, at::IntArrayRef padding) {
  TORCH_CHECK(input.dim() == 4, "depthwise_conv2d: input must be (B, C, H, W), got ",
              input.sizes());
  TORCH_CHECK(input.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat,
              "depthwise_conv2d: float32 tensors only, got ", input.scalar_type(),
              " and ", weight.scalar_type());
  TORCH_CHECK(input.device().is_cpu() && weight.device().is_cpu(),
              "depthwise_conv2d: CPU tensors only");
  const int64_t B = input.size(0), C = input.size(1), H = input.size(2),
                W = input.size(3);
  TORCH_CHECK(weight.dim() == 4 && weight.size(0) == C && weight.size(1) == 1,
              "depthwise_conv2d: weight must be (C, 1, kh, kw) with C = ", C,
              ", got ", weight.sizes());
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2,
              "depthwise_conv2d: stride and padding must have two entries");
  TORCH_CHECK(stride[0] >= 1 && stride[1] >= 1 && padding[0] >= 0 && padding[1] >= 0,
              "depthwise_conv2d: stride must be >= 1 and padding >= 0, got ",
              stride, " and ", padding);
  const int64_t KH = weight.size(2), KW = weight.size(3);
  const int64_t OH = (H + 2 * padding[0] - KH) / stride[0] + 1;
  const int64_t OW = (W + 2 * padding[1] - KW) / stride[1] + 1;
  TORCH_CHECK(OH >= 1 && OW >= 1, "depthwise_conv2d: a ", KH, "x", KW,
              " kernel does not fit a ", H, "x", W, " input with padding ", padding);
  const float* bias_ptr = nullptr;
  at::Tensor b;
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->numel() == C,
                "depthwise_conv2d: bias must be float32 with ", C, " entries");
    b = bias->contiguous();
    bias_ptr = b.data_ptr<float>();
  }

  // Any layout whose channels are contiguous is read as it is: a channel
  // slice of a channels-last map (MobileMamba splits maps into global and
  // local channels) needs no copy.
  const at::Tensor x = input.stride(1) == 1 || C == 1
                           ? input
                           : input.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor wt = weight.reshape({C, KH * KW}).t().contiguous();
  at::Tensor y = at::empty({B, C, OH, OW},
                           input.options().memory_format(at::MemoryFormat::ChannelsLast));
  const Geometry g{H, W, C, OH, OW, KH, KW, stride[0], stride[1], padding[0], padding[1],
                   x.stride(2), x.stride(3)};
  const float* xp = x.data_ptr<float>();
  const float* wp = wt.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  // Tasks are output rows; a task gets at least ~64k multiply-adds so that
  // the small maps of batch 1 stay on one thread.
  const int64_t row_work = std::max<int64_t>(1, OW * C * KH * KW);
  const int64_t grain = std::max<int64_t>(1, 65536 / row_work);
  at::parallel_for(0, B * OH, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end;) {
      const int64_t n = r / OH, oh = r % OH;
      const int64_t stop = std::min(end, (n + 1) * OH);
      dw_rows(xp + n * x.stride(0), wp, bias_ptr, yp + n * OH * OW * C, g, oh,
              oh + (stop - r));
      r = stop;
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(mmmobilemamba, m) {
  m.def("depthwise_conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, "
        "int[2] padding) -> Tensor");
}

TORCH_LIBRARY_IMPL(mmmobilemamba, CPU, m) {
  m.impl("depthwise_conv2d", &depthwise_conv2d);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Depthwise 2-D convolution for inference on CPU "
            "(registers torch.ops.mmmobilemamba.depthwise_conv2d).";
}
