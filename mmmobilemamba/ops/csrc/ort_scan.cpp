// ONNX Runtime custom-op library: the `mmmobilemamba::SelectiveScan` and
// `mmmobilemamba::SelectiveScanNormGate` nodes of the 'onnx-native' files
// (SS2D's scan, one node per SS2D).
//
// Built by mmmobilemamba/deploy/native/onnxruntime.py against ONNX
// Runtime's C API header (onnxruntime_c_api.h, from a registry package);
// loaded with SessionOptions.register_custom_ops_library(path), which calls
// RegisterCustomOps below. It uses the C API only (no C++ wrapper, no
// link against libonnxruntime): every call goes through the OrtApi table
// the runtime hands over.
//
// Inputs (float32, contiguous as ORT passes them):
//   0 u (b, d, L)   1 delta (b, K, d, L)   2 A (K, d, N)
//   3 B (b, K, N, L)   4 C (b, K, N, L)   5 D (K, d)   6 bias (K, d)
// SelectiveScanNormGate adds SS2D's epilogue (scan_native::norm_gate):
//   7 z (b, d, L)   8 norm_weight (d,)   9 norm_bias (d,);  attribute eps
// (float, default 1e-5, as LayerNormalization's).
// Output: y (b, d, L). The math is scan_native.h; this file only checks
// shapes and hands over ORT's thread pool (KernelContext_ParallelFor).
#include <onnxruntime_c_api.h>

#include <atomic>
#include <cmath>
#include <climits>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "scan_native.h"

namespace {

constexpr const char* kDomain = "mmmobilemamba";
constexpr const char* kOpType = "SelectiveScan";
constexpr const char* kGatedOpType = "SelectiveScanNormGate";
constexpr size_t kNumInputs = 7, kNumGatedInputs = 10;
constexpr const char* kInputNames[kNumGatedInputs] = {
    "u", "delta", "A", "B", "C", "D", "bias", "z", "norm_weight", "norm_bias"};

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(dims[i]);
  }
  return s + (dims.size() == 1 ? ",)" : ")");
}

struct Kernel {
  const OrtApi* api;
  bool gated;   // SelectiveScanNormGate
  float eps;    // its LayerNorm's
};

// The shape of a tensor value (an error status naming `what` on failure).
OrtStatus* value_shape(const OrtApi* api, const OrtValue* value,
                       std::vector<int64_t>& dims) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  if (OrtStatus* s = api->GetTensorTypeAndShape(value, &info)) return s;
  size_t rank = 0;
  OrtStatus* s = api->GetDimensionsCount(info, &rank);
  if (s == nullptr) {
    dims.assign(rank, 0);
    s = api->GetDimensions(info, dims.data(), rank);
  }
  api->ReleaseTensorTypeAndShapeInfo(info);
  return s;
}

// scan_native's parallel-for over ORT's intra-op pool: one ORT task per
// scan task (each a block of channels of one image, milliseconds long).
struct PoolCtx {
  const OrtApi* api;
  const OrtKernelContext* context;
};

struct RangeJob {
  const scan_native::RangeFn* fn;
  std::atomic<bool> failed{false};
};

void run_task(void* data, size_t index) {
  auto* job = static_cast<RangeJob*>(data);
  try {
    (*job->fn)(static_cast<int64_t>(index), static_cast<int64_t>(index) + 1);
  } catch (...) {
    job->failed.store(true);
  }
}

void ort_parallel_for(void* ctx, int64_t n, const scan_native::RangeFn& fn) {
  auto* pool = static_cast<PoolCtx*>(ctx);
  RangeJob job;
  job.fn = &fn;
  OrtStatus* s = pool->api->KernelContext_ParallelFor(
      pool->context, run_task, static_cast<size_t>(n), 0, &job);
  if (s != nullptr) {  // no pool: the tasks are idempotent, run them here
    pool->api->ReleaseStatus(s);
    fn(0, n);
    return;
  }
  if (job.failed.load())
    throw std::runtime_error("a selective scan task failed (out of memory?)");
}

OrtStatus* compute(const Kernel& kernel, OrtKernelContext* context) {
  const OrtApi* api = kernel.api;
  const std::string op = std::string("mmmobilemamba::") +
                         (kernel.gated ? kGatedOpType : kOpType);
  const size_t inputs = kernel.gated ? kNumGatedInputs : kNumInputs;
  size_t count = 0;
  if (OrtStatus* s = api->KernelContext_GetInputCount(context, &count))
    return s;
  if (count != inputs)
    return api->CreateStatus(
        ORT_INVALID_ARGUMENT,
        (op + " takes " + std::to_string(inputs) + " inputs (u, delta, A, B, "
         "C, D, bias" + (kernel.gated ? ", z, norm_weight, norm_bias" : "") +
         "), got " + std::to_string(count)).c_str());
  const float* data[kNumGatedInputs];
  std::vector<int64_t> dims[kNumGatedInputs];
  for (size_t i = 0; i < inputs; ++i) {
    const OrtValue* value = nullptr;
    if (OrtStatus* s = api->KernelContext_GetInput(context, i, &value))
      return s;
    if (value == nullptr)
      return api->CreateStatus(
          ORT_INVALID_ARGUMENT,
          (op + ": input " + kInputNames[i] + " is missing").c_str());
    if (OrtStatus* s = value_shape(api, value, dims[i])) return s;
    const void* ptr = nullptr;
    if (OrtStatus* s = api->GetTensorData(value, &ptr)) return s;
    data[i] = static_cast<const float*>(ptr);
  }
  // u fixes b, d, L; delta K; A N. Every input must then match exactly.
  const std::vector<int64_t>& u = dims[0];
  if (u.size() != 3)
    return api->CreateStatus(
        ORT_INVALID_ARGUMENT,
        (op + ": input u must be (b, d, L), got " + dims_str(u)).c_str());
  const int64_t b = u[0], d = u[1], L = u[2];
  const int64_t K = dims[1].size() == 4 ? dims[1][1] : -1;
  const int64_t N = dims[2].size() == 3 ? dims[2][2] : -1;
  const std::vector<int64_t> expected[kNumGatedInputs] = {
      {b, d, L}, {b, K, d, L}, {K, d, N}, {b, K, N, L},
      {b, K, N, L}, {K, d}, {K, d}, {b, d, L}, {d}, {d}};
  const char* layouts[kNumGatedInputs] = {
      "(b, d, L)", "(b, K, d, L)", "(K, d, N)", "(b, K, N, L)", "(b, K, N, L)",
      "(K, d)", "(K, d)", "(b, d, L)", "(d,)", "(d,)"};
  for (size_t i = 1; i < inputs; ++i) {
    if (dims[i] != expected[i])
      return api->CreateStatus(
          ORT_INVALID_ARGUMENT,
          (op + ": input " + kInputNames[i] + " must be " + layouts[i] + " = " +
           (K < 0 || N < 0 ? std::string(layouts[i]) : dims_str(expected[i])) +
           " for u " + dims_str(u) + ", got " + dims_str(dims[i]))
              .c_str());
  }
  const scan_native::Shape shape{b, d, L, K, N};
  const std::string bad = scan_native::check(shape);
  if (!bad.empty())
    return api->CreateStatus(ORT_INVALID_ARGUMENT, (op + ": " + bad).c_str());
  OrtValue* out = nullptr;
  if (OrtStatus* s = api->KernelContext_GetOutput(context, 0, u.data(),
                                                  u.size(), &out))
    return s;
  void* y = nullptr;
  if (OrtStatus* s = api->GetTensorMutableData(out, &y)) return s;
  if (b == 0) return nullptr;
  PoolCtx pool{api, context};
  try {
    scan_native::forward(shape, data[0], data[1], data[2], data[3], data[4],
                         data[5], data[6], static_cast<float*>(y),
                         ort_parallel_for, &pool);
    if (kernel.gated)
      scan_native::norm_gate(shape, data[7], data[8], data[9], kernel.eps,
                             static_cast<float*>(y));
  } catch (const std::exception& e) {
    return api->CreateStatus(ORT_RUNTIME_EXCEPTION,
                             (op + ": " + e.what()).c_str());
  }
  return nullptr;
}

// ---- the OrtCustomOp callbacks -------------------------------------------

bool is_gated(const OrtCustomOp* op);

OrtStatus* ORT_API_CALL create_kernel(const OrtCustomOp* op, const OrtApi* api,
                                      const OrtKernelInfo* info, void** kernel) {
  const bool gated = is_gated(op);
  float eps = 1e-5f;
  if (gated) {
    OrtStatus* s = api->KernelInfoGetAttribute_float(info, "eps", &eps);
    if (s != nullptr) {  // absent: LayerNormalization's default
      api->ReleaseStatus(s);
      eps = 1e-5f;
    }
    const std::string bad = scan_native::check_eps(eps);
    if (!bad.empty())  // at session creation, not at the first run
      return api->CreateStatus(
          ORT_INVALID_ARGUMENT,
          ("mmmobilemamba::SelectiveScanNormGate: attribute " + bad).c_str());
  }
  *kernel = new Kernel{api, gated, eps};
  return nullptr;
}

OrtStatus* ORT_API_CALL kernel_compute(void* kernel, OrtKernelContext* ctx) {
  return compute(*static_cast<Kernel*>(kernel), ctx);
}

void ORT_API_CALL kernel_destroy(void* kernel) {
  delete static_cast<Kernel*>(kernel);
}

const char* ORT_API_CALL op_name(const OrtCustomOp* op) {
  return is_gated(op) ? kGatedOpType : kOpType;
}
const char* ORT_API_CALL op_provider(const OrtCustomOp*) {
  return "CPUExecutionProvider";
}
ONNXTensorElementDataType ORT_API_CALL float_type(const OrtCustomOp*, size_t) {
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}
size_t ORT_API_CALL input_count(const OrtCustomOp* op) {
  return is_gated(op) ? kNumGatedInputs : kNumInputs;
}
size_t ORT_API_CALL output_count(const OrtCustomOp*) { return 1; }
OrtCustomOpInputOutputCharacteristic ORT_API_CALL required(const OrtCustomOp*,
                                                           size_t) {
  return INPUT_OUTPUT_REQUIRED;
}
OrtMemType ORT_API_CALL input_memory(const OrtCustomOp*, size_t) {
  return OrtMemTypeDefault;
}
int ORT_API_CALL one(const OrtCustomOp*) { return 1; }
int ORT_API_CALL start_version(const OrtCustomOp*) { return 1; }
int ORT_API_CALL end_version(const OrtCustomOp*) { return INT_MAX; }

OrtCustomOp make_op() {
  OrtCustomOp op{};  // members this file does not set stay null
  op.version = ORT_API_VERSION;
  op.GetName = op_name;
  op.GetExecutionProviderType = op_provider;
  op.GetInputType = float_type;
  op.GetInputTypeCount = input_count;
  op.GetOutputType = float_type;
  op.GetOutputTypeCount = output_count;
  op.KernelDestroy = kernel_destroy;
  op.GetInputCharacteristic = required;
  op.GetOutputCharacteristic = required;
  op.GetInputMemoryType = input_memory;
  op.GetVariadicInputMinArity = one;
  op.GetVariadicInputHomogeneity = one;
  op.GetVariadicOutputMinArity = one;
  op.GetVariadicOutputHomogeneity = one;
  op.CreateKernelV2 = create_kernel;
  op.KernelComputeV2 = kernel_compute;
  op.GetStartVersion = start_version;
  op.GetEndVersion = end_version;
  return op;
}

const OrtCustomOp kOp = make_op(), kGatedOp = make_op();

bool is_gated(const OrtCustomOp* op) { return op == &kGatedOp; }

// Domains must outlive every session that uses them; a process registers a
// handful at most, so they are kept (not released) until exit.
std::mutex domains_mutex;
std::vector<OrtCustomOpDomain*> domains;

}  // namespace

extern "C" ORT_EXPORT OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* base) {
  const OrtApi* api = base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    // Version 1 of the table always exists and starts with CreateStatus.
    const OrtApi* v1 = base->GetApi(1);
    const std::string msg =
        std::string("the mmmobilemamba SelectiveScan library was built "
                    "against ONNX Runtime API version ") +
        std::to_string(ORT_API_VERSION) + " (onnxruntime 1." +
        std::to_string(ORT_API_VERSION) + " headers), which the loaded "
        "onnxruntime " + base->GetVersionString() + " does not provide; "
        "install onnxruntime >= 1." + std::to_string(ORT_API_VERSION) +
        " or rebuild the library with: python -m mmmobilemamba.deploy.native"
        " build --runtime onnxruntime";
    return v1 ? v1->CreateStatus(ORT_FAIL, msg.c_str()) : nullptr;
  }
  OrtCustomOpDomain* domain = nullptr;
  if (OrtStatus* s = api->CreateCustomOpDomain(kDomain, &domain)) return s;
  for (const OrtCustomOp* op : {&kOp, &kGatedOp}) {
    if (OrtStatus* s = api->CustomOpDomain_Add(domain, op)) {
      api->ReleaseCustomOpDomain(domain);
      return s;
    }
  }
  if (OrtStatus* s = api->AddCustomOpDomain(options, domain)) {
    api->ReleaseCustomOpDomain(domain);
    return s;
  }
  std::lock_guard<std::mutex> lock(domains_mutex);
  domains.push_back(domain);
  return nullptr;
}
