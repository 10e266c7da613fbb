// The compute boundary (ARCHITECTURE.md §7): one device's kernels behind one interface, chosen at
// run time from `run.device`. Units, sublayers and the optimizer call these and never a kernel by
// name, so a new device is a new Backend, not a change to the model.
//
// Every op has the contract of the layer header named beside it (layers/*.h): the same arguments,
// shapes, saved values and conventions (activation gradients assigned (=), parameter gradients
// accumulated (+=)), with every float pointer in the backend's device memory (Tensors made with
// device()). Token ids (embedding's tokens, cross-entropy's targets) are host int32 arrays on
// every backend, as the data loader makes them; a device backend stages them with the op. The CPU
// backend is the reference the others are tested against (tests/layers runs each layer test over
// every backend this build has).
//
// Workspaces: transient buffers belong to the backend, per calling thread on the CPU (per stream
// on CUDA). `scratch` hands callers such buffers; the kernels' own workspaces stay inside each
// backend. What must survive from a forward to its backward is in the caller's cache.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/adamw_scalars.h"
#include "core/device.h"
#include "layers/activation.h"
#include "layers/attention.h"
#include "layers/dropout.h"
#include "layers/ffn.h"
#include "layers/mha.h"

namespace hg {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // ---- memory ----
  // At least n floats private to the calling thread (CPU) or stream (CUDA), contents undefined,
  // valid until the next scratch(slot, ·) from the same thread; slot in [0, kScratchSlots).
  static constexpr int kScratchSlots = 8;
  virtual float* scratch(int slot, int64_t n) = 0;

  // ---- element-wise and sums (core/elementwise.h) ----
  virtual void add_into(float* y, const float* x, int64_t n) = 0;               // y += x
  virtual void add(float* out, const float* a, const float* b, int64_t n) = 0;  // out = a + b
  virtual void copy(float* out, const float* x, int64_t n) = 0;                 // out = x
  virtual void scale(float* y, float s, int64_t n) = 0;                         // y *= s
  virtual void add_row_bias(float* out, const float* bias, int64_t rows,
                            int d) = 0;  // out[r,:] += bias
  // Σ x² and Σ x in double, in a fixed order (the same bits on every run). Host results:
  // a device backend synchronises here.
  virtual double sum_squares(const float* x, int64_t n) = 0;
  virtual double sum(const float* x, int64_t n) = 0;
  // sums[i] = sum_squares(spans[i]) for every span, each the same value as alone (the gradient
  // norm's per-tensor sums): the spans are independent, so a backend may run them side by side.
  struct Span {
    const float* data;
    int64_t n;
  };
  virtual void sum_squares_each(const std::vector<Span>& spans, double* sums) {
    for (size_t i = 0; i < spans.size(); ++i) sums[i] = sum_squares(spans[i].data, spans[i].n);
  }

  // ---- layers (layers/linear.h, layernorm.h, ffn.h, dropout.h, embedding.h, cross_entropy.h) ----
  virtual void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                              int64_t rows, int64_t in_dim, int64_t out_dim, int64_t ldw) = 0;
  virtual void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                               const float* inp, const float* weight, int64_t rows, int64_t in_dim,
                               int64_t out_dim, int64_t ldw) = 0;
  virtual void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                 const float* gain, const float* bias, int64_t rows, int groups,
                                 int C) = 0;
  virtual void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                                  const float* inp, const float* gain, const float* mean,
                                  const float* rstd, int64_t rows, int groups, int C) = 0;
  virtual void ffn_forward(float* out, FfnCache& cache, const float* inp, const float* w1,
                           const float* b1, const float* w2, const float* b2, int64_t rows, int d,
                           int F, int width, Activation act) = 0;
  // The hidden gradient [rows, width] lives in the backend's own workspace.
  virtual void ffn_backward(float* dinp, float* dw1, float* db1, float* dw2, float* db2,
                            const float* dout, const FfnCache& cache, const float* inp,
                            const float* w1, const float* w2, int64_t rows, int d, int F, int width,
                            Activation act) = 0;
  virtual void dropout_forward(float* x, const DropoutSite& site, int64_t B,
                               int64_t per_sample) = 0;
  virtual void dropout_backward(float* dx, const DropoutSite& site, int64_t B,
                                int64_t per_sample) = 0;
  virtual void embedding_forward(float* out, const int32_t* tokens, const float* weight,
                                 int64_t rows, int d) = 0;
  virtual void embedding_backward(float* dweight, const float* dout, const int32_t* tokens,
                                  int64_t rows, int d) = 0;
  virtual void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                                     int64_t rows, int V) = 0;
  virtual void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                                      float scale, int64_t rows, int V) = 0;

  // ---- attention (layers/attention.h, mha.h) ----
  virtual void attention_forward(float* out, AttentionCache& cache, const float* u,
                                 const AttentionParams& w, const AttentionConfig& cfg, int64_t B,
                                 int64_t n) = 0;
  virtual void attention_backward(float* du, const AttentionParams& g, const float* dout,
                                  const AttentionCache& cache, const float* u,
                                  const AttentionParams& w, const AttentionConfig& cfg, int64_t B,
                                  int64_t n) = 0;
  virtual void mha_forward(float* out, MhaCache& cache, const float* q_in, const float* kv_in,
                           const MhaParams& w, int d, int heads, int head_dim, FunnelMask mask,
                           int k, int64_t B, int64_t nq, int64_t nk) = 0;
  virtual void mha_backward(float* dq_in, float* dkv_in, const MhaParams& g, const float* dout,
                            const MhaCache& cache, const float* q_in, const float* kv_in,
                            const MhaParams& w, int d, int heads, int head_dim, FunnelMask mask,
                            int k, int64_t B, int64_t nq, int64_t nk) = 0;

  // ---- incremental decoding (attention.h, mha.h; issue 17) ----
  virtual void attention_decode(float* out, AttentionDecodeCache& cache, const float* u,
                                const AttentionParams& w, const AttentionConfig& cfg, int64_t B,
                                int64_t n) = 0;
  virtual void mha_decode(float* out, MhaDecodeCache& cache, const float* q_in, const float* kv_in,
                          const MhaParams& w, int d, int heads, int head_dim, FunnelMask mask,
                          int k, int64_t B, int64_t q0, int64_t nq, int64_t nk_new) = 0;

  // ---- shortening and upsampling (layers/resample.h) ----
  virtual void shift_right_forward(float* out, const float* inp, int64_t B, int64_t n, int d,
                                   int s) = 0;
  virtual void shift_right_backward(float* dinp, const float* dout, int64_t B, int64_t n, int d,
                                    int s) = 0;
  virtual void pool_linear_forward(float* out, const float* inp, const float* weight,
                                   const float* bias, int64_t B, int64_t n, int d, int k) = 0;
  virtual void pool_linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                    const float* inp, const float* weight, int64_t B, int64_t n,
                                    int d, int k) = 0;
  virtual void pool_avg_forward(float* out, const float* inp, int64_t B, int64_t n, int d,
                                int k) = 0;
  virtual void pool_avg_backward(float* dinp, const float* dout, int64_t B, int64_t n, int d,
                                 int k) = 0;
  virtual void upsample_linear_forward(float* out, const float* inp, const float* weight,
                                       const float* bias, int64_t B, int64_t m, int d, int k) = 0;
  virtual void upsample_linear_backward(float* dinp, float* dweight, float* dbias,
                                        const float* dout, const float* inp, const float* weight,
                                        int64_t B, int64_t m, int d, int k) = 0;
  virtual void upsample_repeat_forward(float* out, const float* inp, int64_t B, int64_t m, int d,
                                       int k) = 0;
  virtual void upsample_repeat_backward(float* dinp, const float* dout, int64_t B, int64_t m, int d,
                                        int k) = 0;

  // ---- optimizer (layers/adamw.h) ----
  virtual void adamw_step(float* value, const float* grad, float* exp_avg, float* exp_avg_sq,
                          int64_t n, const AdamWScalars& k, bool decay) = 0;
};

// The process's CPU backend (always there).
Backend& cpu_backend();
// The backend of `device`, made on first use. Throws UsageError naming the reason when this build
// or machine has none (a build without nvcc, or no GPU).
Backend& backend_for(Device device);
// Before the first backend_for(device): this process computes on GPU local_rank mod the GPUs it
// sees (one GPU per rank of a node; more ranks than GPUs share them). No-op for the CPU.
void select_device(Device device, int local_rank);
// The GPUs this process sees (1 for the CPU) and the memory of the one it computes on, in bytes
// (0 for the CPU: the node's memory is trainer/memory_estimate.h's business).
int device_count(Device device);
double device_memory_bytes(Device device);
// The devices whose backend can be made here, CPU first (tests run over these).
std::vector<Device> available_devices();
// Why `device` is not available here ("" when it is), for test skip messages.
std::string unavailable_reason(Device device);

}  // namespace hg
