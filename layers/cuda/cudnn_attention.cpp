#include "layers/cuda/cudnn_attention.h"

#include <atomic>

#include "core/error.h"

#ifdef HG_CUDNN
#include <cudnn_frontend.h>
#include <dlfcn.h>

#include <map>
#include <tuple>

#include "core/tensor.h"
#include "layers/cuda/ops.h"

// The frontend's dynamic loading resolves every cuDNN call through this handle (cudnn_frontend
// shim), which we open ourselves so that a missing library is a message, not a failed start.
namespace cudnn_frontend {
void* cudnn_dlhandle = nullptr;
}
#endif

namespace hg::cuda {

namespace {
std::atomic<WindowEngine> g_window_engine{WindowEngine::None};
}
void set_window_engine(WindowEngine engine) { g_window_engine.store(engine); }
WindowEngine window_engine() { return g_window_engine.load(); }

bool cudnn_window_fits(const AttentionOperands& x) {
  return x.mask.kind == kCausalMask && x.nq == x.nk && x.e % 8 == 0 && x.e <= 128;
}

#ifndef HG_CUDNN

std::string cudnn_unavailable_reason() {
#ifdef HG_CUDA_EMULATED
  return "the emulated device has no cuDNN (it runs this project's kernels only; "
         "run.attention_backend split runs cudnn's composition with them)";
#else
  return "this build has no cuDNN (the cuDNN frontend's headers were not found when it was "
         "configured: run scripts/setup.sh, then rebuild)";
#endif
}
struct CudnnWindow::State {};
CudnnWindow::CudnnWindow() {
  throw UsageError("run.attention_backend cudnn: " + cudnn_unavailable_reason());
}
CudnnWindow::~CudnnWindow() = default;
void CudnnWindow::forward(float*, float*, const AttentionOperands&) {}
void CudnnWindow::backward(const AttentionGrads&, float*, const float*, const float*, const float*,
                           const AttentionOperands&) {}
SplitScratch CudnnWindow::scratch(const AttentionOperands&) { return {}; }

#else

namespace fe = cudnn_frontend;

namespace {

// Loads libcudnn.so.9 once; "" on success, else dlerror's words.
const std::string& load_cudnn() {
  static const std::string error = [] {
    fe::cudnn_dlhandle = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_GLOBAL);
    if (fe::cudnn_dlhandle != nullptr) return std::string();
    const char* why = dlerror();
    return std::string("libcudnn.so.9 not found (") + (why ? why : "dlopen failed") +
           "): install cuDNN 9 (e.g. pip's nvidia-cudnn-cu13) and put its lib/ on LD_LIBRARY_PATH";
  }();
  return error;
}

void check_fe(fe::error_t status, const char* what) {
  if (status.is_bad())
    throw std::runtime_error(std::string("cuDNN ") + what + ": " + status.get_message());
}

// Tensor uids of the variant packs.
enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV };

// [B, H, n, e] views of our row-major [B, n, H·e] buffers: no transposes.
std::vector<int64_t> bhsd_dims(const AttentionOperands& x) { return {x.B, x.H, x.nq, x.e}; }
std::vector<int64_t> bhsd_strides(const AttentionOperands& x) {
  const int64_t HE = int64_t(x.H) * x.e;
  return {x.nq * HE, x.e, HE, 1};
}

std::shared_ptr<fe::graph::Tensor_attributes> input(fe::graph::Graph& g, const char* name,
                                                    int64_t uid, const AttentionOperands& x) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name(name)
                      .set_uid(uid)
                      .set_dim(bhsd_dims(x))
                      .set_stride(bhsd_strides(x)));
}
std::shared_ptr<fe::graph::Tensor_attributes> stats_tensor(fe::graph::Graph& g,
                                                           const AttentionOperands& x) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name("stats")
                      .set_uid(kStats)
                      .set_dim({x.B, x.H, x.nq, 1})
                      .set_stride({x.H * x.nq, x.nq, 1, 1})
                      .set_data_type(fe::DataType_t::FLOAT));
}
void mark_output(const std::shared_ptr<fe::graph::Tensor_attributes>& t, int64_t uid,
                 const AttentionOperands& x) {
  t->set_output(true).set_uid(uid).set_dim(bhsd_dims(x)).set_stride(bhsd_strides(x));
}

// The band of ARCHITECTURE.md §1.3: keys max(0, t-w+1) .. t. cuDNN's left bound keeps key j of
// query t iff j + w > t (cudnn_frontend's diagonal_band_mask), the same set; w >= n is plain
// causal attention.
template <class Attributes>
void set_band(Attributes& a, const AttentionOperands& x) {
  a.set_causal_mask(true);
  if (x.mask.window < x.nq) a.set_sliding_window_length(static_cast<int>(x.mask.window));
}

std::shared_ptr<fe::graph::Graph> new_graph() {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

void build(fe::graph::Graph& g, cudnnHandle_t handle) {
  check_fe(g.validate(), "validate");
  check_fe(g.build_operation_graph(handle), "build_operation_graph");
  check_fe(g.create_execution_plans({fe::HeurMode_t::A}), "create_execution_plans");
  check_fe(g.check_support(handle), "check_support (this GPU or cuDNN takes no such SDPA)");
  check_fe(g.build_plans(handle), "build_plans");
}

std::shared_ptr<fe::graph::Graph> forward_graph(const AttentionOperands& x, cudnnHandle_t handle) {
  auto g = new_graph();
  auto q = input(*g, "q", kQ, x), k = input(*g, "k", kK, x), v = input(*g, "v", kV, x);
  auto a = fe::graph::SDPA_attributes().set_name("window").set_generate_stats(true).set_attn_scale(
      x.scale);
  set_band(a, x);
  auto [o, stats] = g->sdpa(q, k, v, a);
  mark_output(o, kO, x);
  stats->set_output(true).set_uid(kStats).set_data_type(fe::DataType_t::FLOAT);
  stats->set_dim({x.B, x.H, x.nq, 1}).set_stride({x.H * x.nq, x.nq, 1, 1});
  build(*g, handle);
  return g;
}

// Deterministic: cuDNN's default dQ accumulates with atomics; the issue's "same run twice, same
// bits" needs set_deterministic_algorithm.
std::shared_ptr<fe::graph::Graph> backward_graph(const AttentionOperands& x, cudnnHandle_t handle) {
  auto g = new_graph();
  auto q = input(*g, "q", kQ, x), k = input(*g, "k", kK, x), v = input(*g, "v", kV, x);
  auto o = input(*g, "o", kO, x), dout = input(*g, "dO", kDO, x);
  auto stats = stats_tensor(*g, x);
  auto a = fe::graph::SDPA_backward_attributes()
               .set_name("window_backward")
               .set_attn_scale(x.scale)
               .set_deterministic_algorithm(true);
  set_band(a, x);
  auto [dq, dk, dv] = g->sdpa_backward(q, k, v, o, dout, stats, a);
  mark_output(dq, kDQ, x);
  mark_output(dk, kDK, x);
  mark_output(dv, kDV, x);
  build(*g, handle);
  return g;
}

// A device buffer of n bfloat16s (a float Tensor of half as many elements).
uint16_t* bf16_buffer(Tensor& t, int64_t n) {
  if (t.numel() < (n + 1) / 2) t = Tensor({(n + 1) / 2}, Device::Cuda);
  return reinterpret_cast<uint16_t*>(t.data());
}

}  // namespace

std::string cudnn_unavailable_reason() {
  std::string reason = load_cudnn();
  if (!reason.empty()) return reason;
  static const std::string version_error = [] {
    const size_t v = fe::detail::get_backend_version();
    return v >= 90200 ? std::string()
                      : "cuDNN " + std::to_string(v) + " is older than 9.2 (sliding windows)";
  }();
  return version_error;
}

struct CudnnWindow::State {
  cudnnHandle_t handle = nullptr;
  // (B, H, n, e, window, backward) -> its built graph.
  std::map<std::tuple<int64_t, int, int64_t, int, int64_t, bool>,
           std::shared_ptr<fe::graph::Graph> >
      graphs;
  Tensor q16, k16, v16, o16, do16, dq16, dk16, dv16, workspace, out, lse;

  fe::graph::Graph& graph(const AttentionOperands& x, bool backward) {
    const auto key = std::make_tuple(x.B, x.H, x.nq, x.e, x.mask.window, backward);
    auto it = graphs.find(key);
    if (it == graphs.end())
      it = graphs.emplace(key, backward ? backward_graph(x, handle) : forward_graph(x, handle))
               .first;
    return *it->second;
  }
  void execute(fe::graph::Graph& g, std::unordered_map<int64_t, void*>& pack) {
    int64_t bytes = 0;
    check_fe(g.get_workspace_size(bytes), "get_workspace_size");
    if (workspace.numel() * 4 < bytes) workspace = Tensor({(bytes + 3) / 4}, Device::Cuda);
    check_fe(g.execute(handle, pack, workspace.data()), "execute");
  }
};

CudnnWindow::CudnnWindow() : state_(std::make_unique<State>()) {
  require(cudnn_unavailable_reason().empty(), cudnn_unavailable_reason());
  if (fe::detail::create_handle(&state_->handle) != CUDNN_STATUS_SUCCESS)
    throw std::runtime_error("cudnnCreate failed");
}
CudnnWindow::~CudnnWindow() {
  if (state_ && state_->handle != nullptr) fe::detail::destroy_handle(state_->handle);
}

void CudnnWindow::forward(float* out, float* lse, const AttentionOperands& x) {
  require(cudnn_window_fits(x), "cudnn attention: this attention does not fit cuDNN's SDPA");
  const int64_t n = x.B * x.nq * x.H * x.e;
  State& s = *state_;
  uint16_t *q = bf16_buffer(s.q16, n), *k = bf16_buffer(s.k16, n), *v = bf16_buffer(s.v16, n);
  uint16_t* o = bf16_buffer(s.o16, n);
  round_to_bf16(q, x.q_window, n);
  round_to_bf16(k, x.k_window, n);
  round_to_bf16(v, x.v_window, n);
  std::unordered_map<int64_t, void*> pack = {{kQ, q}, {kK, k}, {kV, v}, {kO, o}, {kStats, lse}};
  s.execute(s.graph(x, false), pack);
  widen_bf16(out, o, n, false);
}

void CudnnWindow::backward(const AttentionGrads& g, float*, const float* dout, const float* out,
                           const float* lse, const AttentionOperands& x) {
  require(cudnn_window_fits(x), "cudnn attention: this attention does not fit cuDNN's SDPA");
  const int64_t n = x.B * x.nq * x.H * x.e;
  State& s = *state_;
  uint16_t *q = bf16_buffer(s.q16, n), *k = bf16_buffer(s.k16, n), *v = bf16_buffer(s.v16, n);
  uint16_t *o = bf16_buffer(s.o16, n), *dy = bf16_buffer(s.do16, n);
  uint16_t *dq = bf16_buffer(s.dq16, n), *dk = bf16_buffer(s.dk16, n), *dv = bf16_buffer(s.dv16, n);
  round_to_bf16(q, x.q_window, n);
  round_to_bf16(k, x.k_window, n);
  round_to_bf16(v, x.v_window, n);
  round_to_bf16(o, out, n);
  round_to_bf16(dy, dout, n);
  std::unordered_map<int64_t, void*> pack = {
      {kQ, q},   {kK, k},   {kV, v},   {kO, o},  {kStats, const_cast<float*>(lse)},
      {kDO, dy}, {kDQ, dq}, {kDK, dk}, {kDV, dv}};
  s.execute(s.graph(x, true), pack);
  widen_bf16(g.dq_window, dq, n, false);
  widen_bf16(g.dk_window, dk, n, true);
  widen_bf16(g.dv_window, dv, n, true);
}

SplitScratch CudnnWindow::scratch(const AttentionOperands& x) {
  const int64_t rows = x.B * x.nq * x.H * x.e, stats = x.B * x.H * x.nq;
  State& s = *state_;
  if (s.out.numel() < 2 * rows) s.out = Tensor({2 * rows}, Device::Cuda);
  if (s.lse.numel() < 2 * stats) s.lse = Tensor({2 * stats}, Device::Cuda);
  return {s.out.data(), s.lse.data(), s.out.data() + rows, s.lse.data() + stats};
}

#endif  // HG_CUDNN

CudnnWindow& cudnn_window() {
  static CudnnWindow window;
  return window;
}

}  // namespace hg::cuda
