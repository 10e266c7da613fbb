// The CUDA backend: layers/backend.h's ops on Device::Cuda memory, each forwarding to a kernel of
// layers/cuda/*.cu (or cuBLAS) with the CPU layer's contract. COMPILED, NOT RUN: no machine of
// this project has a GPU; tests/layers compares every op here with the CPU backend and reports
// itself skipped without a device; tests/cuda_emulation runs the kernels on the CPU.
#include "layers/cuda/cuda_backend.h"

#include <array>
#include <type_traits>
#include <vector>

#include "core/cuda/device.h"
#include "core/error.h"
#include "core/random.h"
#include "layers/cross_entropy.h"
#include "layers/cuda/attention_layers.h"
#include "layers/cuda/attention_split.h"
#include "layers/cuda/cudnn_attention.h"
#include "layers/cuda/decode_layers.h"
#include "layers/cuda/ffn_layer.h"
#include "layers/cuda/ops.h"
#include "layers/resample.h"

namespace hg {
namespace {

// A device buffer that grows and never shrinks; its contents are undefined after it grows.
// The free is ordered on the default stream after the kernels queued before it (cudaFreeAsync,
// core/cuda/device.h), so growing never frees memory still in use.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cuda::device_free(data_); }
  T* grow(int64_t n) {
    if (n > capacity_) {
      cuda::device_free(data_);
      data_ = nullptr;  // stays consistent if the allocation below throws
      capacity_ = 0;
      if constexpr (std::is_same_v<T, float>)
        data_ = cuda::device_alloc(n);
      else
        data_ = cuda::device_alloc_int32(n);
      capacity_ = n;
    }
    return data_;
  }

 private:
  T* data_ = nullptr;
  int64_t capacity_ = 0;
};

// hg::Activation and cuda::Activation list the same functions in the same order (ops.h).
cuda::Activation on_device(Activation act) { return static_cast<cuda::Activation>(act); }

class CudaBackend final : public Backend {
 public:
  CudaBackend() { cuda::register_memory(); }
  Device device() const override { return Device::Cuda; }
  float* scratch(int slot, int64_t n) override { return scratch_.at(slot).grow(n); }

  void add_into(float* y, const float* x, int64_t n) override { cuda::add_into(y, x, n); }
  void add(float* out, const float* a, const float* b, int64_t n) override {
    cuda::add(out, a, b, n);
  }
  void copy(float* out, const float* x, int64_t n) override { cuda::copy(out, x, n); }
  void scale(float* y, float s, int64_t n) override { cuda::scale(y, s, n); }
  void add_row_bias(float* out, const float* bias, int64_t rows, int d) override {
    cuda::add_row_bias(out, bias, rows, d);
  }
  double sum_squares(const float* x, int64_t n) override { return cuda::sum_squares(x, n); }
  double sum(const float* x, int64_t n) override { return cuda::sum(x, n); }

  void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                      int64_t rows, int64_t in_dim, int64_t out_dim, int64_t ldw) override {
    cuda::linear_forward(out, inp, weight, bias, rows, in_dim, out_dim, ldw);
  }
  void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, int64_t rows, int64_t in_dim,
                       int64_t out_dim, int64_t ldw) override {
    cuda::linear_backward(dinp, dweight, dbias, dout, inp, weight, rows, in_dim, out_dim, ldw);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                         const float* bias, int64_t rows, int groups, int C) override {
    cuda::layernorm_forward(out, mean, rstd, inp, gain, bias, rows, groups, C);
  }
  void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                          const float* inp, const float* gain, const float* mean, const float* rstd,
                          int64_t rows, int groups, int C) override {
    cuda::layernorm_backward(dinp, dgain, dbias, dout, inp, gain, mean, rstd, rows, groups, C);
  }
  // layers/cuda/ffn_layer.h: layers/cpu/ffn.cpp's composition over this backend's ops.
  void ffn_forward(float* out, FfnCache& cache, const float* inp, const float* w1, const float* b1,
                   const float* w2, const float* b2, int64_t rows, int d, int F, int width,
                   Activation act) override {
    cuda::ffn_forward(*this, out, cache, inp, w1, b1, w2, b2, rows, d, F, width, act);
  }
  void ffn_backward(float* dinp, float* dw1, float* db1, float* dw2, float* db2, const float* dout,
                    const FfnCache& cache, const float* inp, const float* w1, const float* w2,
                    int64_t rows, int d, int F, int width, Activation act) override {
    float* dhidden = ffn_hidden_.grow(rows * width);  // [rows, width]
    cuda::ffn_backward(*this, dhidden, dinp, dw1, db1, dw2, db2, dout, cache, inp, w1, w2, rows, d,
                       F, width, act);
  }
  // The CPU layer's checks and host-side key, then the device mask (dropout_kernels.cuh).
  void dropout_forward(float* x, const DropoutSite& site, int64_t B, int64_t per_sample) override {
    dropout(x, site, B, per_sample);
  }
  void dropout_backward(float* dx, const DropoutSite& site, int64_t B,
                        int64_t per_sample) override {
    dropout(dx, site, B, per_sample);
  }
  void embedding_forward(float* out, const int32_t* tokens, const float* weight, int64_t rows,
                         int d) override {
    cuda::embedding_forward(out, stage(tokens, rows), weight, rows, d);
  }
  void embedding_backward(float* dweight, const float* dout, const int32_t* tokens, int64_t rows,
                          int d) override {
    cuda::embedding_backward(dweight, dout, stage(tokens, rows), rows, d);
  }
  // Targets are checked on the host, as the CPU layer does, so a bad target throws the same
  // UsageError here instead of the kernel's NaN (ops.h).
  void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                             int64_t rows, int V) override {
    check_targets_in_vocabulary(targets, rows, V);
    cuda::cross_entropy_forward(losses, logits, stage(targets, rows), rows, V);
  }
  void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                              float scale, int64_t rows, int V) override {
    check_targets_in_vocabulary(targets, rows, V);
    cuda::cross_entropy_backward(dlogits, logits, stage(targets, rows), scale, rows, V);
  }

  // ---- the rest of the op set of attention_layers.h and ffn_layer.h (the Backend ops are the
  // others) ----
  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
            int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) const {
    cuda::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  void dconv_forward(float* out, const float* inp, const float* taps, int64_t B, int64_t n, int C,
                     int64_t ldt) const {
    cuda::dconv_forward(out, inp, taps, B, n, C, ldt);
  }
  void dconv_backward(float* dinp, float* dtaps, const float* dout, const float* inp,
                      const float* taps, int64_t B, int64_t n, int C, int64_t ldt) const {
    cuda::dconv_backward(dinp, dtaps, dout, inp, taps, B, n, C, ldt);
  }
  void rope(float* x, const float* cs, const float* sn, int64_t B, int64_t n, int H, int e,
            bool inverse) const {
    cuda::rope(x, cs, sn, B, n, H, e, inverse);
  }
  void chunk_softmax_forward(float* probs, const float* logits, int64_t B, int64_t n, int l,
                             int cols) const {
    cuda::chunk_softmax_forward(probs, logits, B, n, l, cols);
  }
  void chunk_softmax_backward(float* dlogits, const float* dprobs, const float* probs, int64_t B,
                              int64_t n, int l, int cols) const {
    cuda::chunk_softmax_backward(dlogits, dprobs, probs, B, n, l, cols);
  }
  void chunk_compress_forward(float* comp, const float* x, const float* probs, int64_t B, int64_t n,
                              int l, int H, int r, int e) const {
    cuda::chunk_compress_forward(comp, x, probs, B, n, l, H, r, e);
  }
  void chunk_compress_backward(float* dx, float* dprobs, const float* dcomp, const float* x,
                               const float* probs, int64_t B, int64_t n, int l, int H, int r,
                               int e) const {
    cuda::chunk_compress_backward(dx, dprobs, dcomp, x, probs, B, n, l, H, r, e);
  }
  // run.attention_backend cudnn or split (layers/attention_backend.h): the joint softmax split,
  // its window segment in cuDNN or in the hand kernel (attention_split.h); the segment calls that
  // makes come back here and run natively.
  static cuda::WindowEngine split_to(const cuda::AttentionOperands& x) {
    const cuda::WindowEngine engine = cuda::window_engine();
    if (engine == cuda::WindowEngine::None || x.segments != cuda::kBothSegments ||
        !cuda::cudnn_window_fits(x))
      return cuda::WindowEngine::None;
    return engine;
  }
  void attention_core_forward(float* out, float* lse, const cuda::AttentionOperands& x) const {
    switch (split_to(x)) {
      case cuda::WindowEngine::Cudnn:
        return cuda::split_attention_forward(*this, cuda::cudnn_window(), out, lse, x);
      case cuda::WindowEngine::Kernel:
        return cuda::split_attention_forward(*this, kernel_window_, out, lse, x);
      case cuda::WindowEngine::None:
        return cuda::attention_core_forward(out, lse, x);
    }
  }
  void attention_core_backward(const cuda::AttentionGrads& g, float* delta, const float* dout,
                               const float* out, const float* lse,
                               const cuda::AttentionOperands& x) const {
    switch (split_to(x)) {
      case cuda::WindowEngine::Cudnn:
        return cuda::split_attention_backward(*this, cuda::cudnn_window(), g, delta, dout, out, lse,
                                              x);
      case cuda::WindowEngine::Kernel:
        return cuda::split_attention_backward(*this, kernel_window_, g, delta, dout, out, lse, x);
      case cuda::WindowEngine::None:
        return cuda::attention_core_backward(g, delta, dout, out, lse, x);
    }
  }
  void attention_merge(float* out, float* lse, const float* out_a, const float* lse_a,
                       const float* out_b, const float* lse_b,
                       const cuda::AttentionOperands& x) const {
    cuda::attention_merge(out, lse, out_a, lse_a, out_b, lse_b, x);
  }
  void activation_forward(float* out, const float* inp, int64_t n, Activation act) const {
    cuda::activation_forward(out, inp, n, on_device(act));
  }
  void activation_backward(float* dinp, const float* dout, const float* inp, int64_t n,
                           Activation act) const {
    cuda::activation_backward(dinp, dout, inp, n, on_device(act));
  }
  void zero(float* x, int64_t n) const { cuda::zero(x, n); }
  void upload(float* dst, const float* host, int64_t n) const {
    cuda::copy_to_device(dst, host, n);
  }

  void attention_core_decode(float* out, const cuda::AttentionOperands& x,
                             const cuda::QueryPlacement& at) const {
    cuda::attention_core_decode(out, x, at);
  }

  // layers/cuda/decode_layers.h: layers/cpu/decode.cpp's steps over this backend's ops, the
  // caches' state in device tensors.
  void attention_decode(float* out, AttentionDecodeCache& cache, const float* u,
                        const AttentionParams& w, const AttentionConfig& cfg, int64_t B,
                        int64_t n) override {
    cuda::attention_decode(*this, decode_work_, out, cache, u, w, cfg, B, n);
  }
  void mha_decode(float* out, MhaDecodeCache& cache, const float* q_in, const float* kv_in,
                  const MhaParams& w, int d, int heads, int head_dim, FunnelMask mask, int k,
                  int64_t B, int64_t q0, int64_t nq, int64_t nk_new) override {
    cuda::mha_decode(*this, decode_work_, out, cache, q_in, kv_in, w, d, heads, head_dim, mask, k,
                     B, q0, nq, nk_new);
  }

  // layers/cuda/attention_layers.h: the CPU layers' compositions over this backend's ops.
  void attention_forward(float* out, AttentionCache& cache, const float* u,
                         const AttentionParams& w, const AttentionConfig& cfg, int64_t B,
                         int64_t n) override {
    cuda::attention_forward(*this, out, cache, u, w, cfg, B, n);
  }
  void attention_backward(float* du, const AttentionParams& g, const float* dout,
                          const AttentionCache& cache, const float* u, const AttentionParams& w,
                          const AttentionConfig& cfg, int64_t B, int64_t n) override {
    cuda::attention_backward(*this, attention_work_, du, g, dout, cache, u, w, cfg, B, n);
  }
  void mha_forward(float* out, MhaCache& cache, const float* q_in, const float* kv_in,
                   const MhaParams& w, int d, int heads, int head_dim, FunnelMask mask, int k,
                   int64_t B, int64_t nq, int64_t nk) override {
    cuda::mha_forward(*this, out, cache, q_in, kv_in, w, d, heads, head_dim, mask, k, B, nq, nk);
  }
  void mha_backward(float* dq_in, float* dkv_in, const MhaParams& g, const float* dout,
                    const MhaCache& cache, const float* q_in, const float* kv_in,
                    const MhaParams& w, int d, int heads, int head_dim, FunnelMask mask, int k,
                    int64_t B, int64_t nq, int64_t nk) override {
    cuda::mha_backward(*this, attention_work_, dq_in, dkv_in, g, dout, cache, q_in, kv_in, w, d,
                       heads, head_dim, mask, k, B, nq, nk);
  }

  void shift_right_forward(float* out, const float* inp, int64_t B, int64_t n, int d,
                           int s) override {
    require(s >= 0, "shift_right: negative shift " + std::to_string(s));
    cuda::shift_right_forward(out, inp, B, n, d, s);
  }
  void shift_right_backward(float* dinp, const float* dout, int64_t B, int64_t n, int d,
                            int s) override {
    require(s >= 0, "shift_right: negative shift " + std::to_string(s));
    cuda::shift_right_backward(dinp, dout, B, n, d, s);
  }
  void pool_linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                           int64_t B, int64_t n, int d, int k) override {
    check_resample_factor(n, k, "pool_linear");
    cuda::pool_linear_forward(out, inp, weight, bias, B, n, d, k);
  }
  void pool_linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                            const float* inp, const float* weight, int64_t B, int64_t n, int d,
                            int k) override {
    check_resample_factor(n, k, "pool_linear");
    cuda::pool_linear_backward(dinp, dweight, dbias, dout, inp, weight, B, n, d, k);
  }
  void pool_avg_forward(float* out, const float* inp, int64_t B, int64_t n, int d, int k) override {
    check_resample_factor(n, k, "pool_avg");
    cuda::pool_avg_forward(out, inp, B, n, d, k);
  }
  void pool_avg_backward(float* dinp, const float* dout, int64_t B, int64_t n, int d,
                         int k) override {
    check_resample_factor(n, k, "pool_avg");
    cuda::pool_avg_backward(dinp, dout, B, n, d, k);
  }
  void upsample_linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                               int64_t B, int64_t m, int d, int k) override {
    check_upsample_factor(k, "upsample_linear");
    cuda::upsample_linear_forward(out, inp, weight, bias, B, m, d, k);
  }
  void upsample_linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                const float* inp, const float* weight, int64_t B, int64_t m, int d,
                                int k) override {
    check_upsample_factor(k, "upsample_linear");
    cuda::upsample_linear_backward(dinp, dweight, dbias, dout, inp, weight, B, m, d, k);
  }
  void upsample_repeat_forward(float* out, const float* inp, int64_t B, int64_t m, int d,
                               int k) override {
    check_upsample_factor(k, "upsample_repeat");
    cuda::upsample_repeat_forward(out, inp, B, m, d, k);
  }
  void upsample_repeat_backward(float* dinp, const float* dout, int64_t B, int64_t m, int d,
                                int k) override {
    check_upsample_factor(k, "upsample_repeat");
    cuda::upsample_repeat_backward(dinp, dout, B, m, d, k);
  }

  void adamw_step(float* value, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                  const AdamWScalars& k, bool decay) override {
    cuda::adamw_step(value, grad, exp_avg, exp_avg_sq, n, k, decay);
  }

 private:
  // Host token ids (backend.h) into the backend's device buffer. The copy is a cudaMemcpy: it
  // waits for the kernels queued before it (which may still read the previous ids) and returns
  // once the host array has been read, so the caller may reuse it at once.
  const int32_t* stage(const int32_t* host_tokens, int64_t rows) {
    int32_t* staged = tokens_.grow(rows);
    if (rows > 0) cuda::copy_to_device(staged, host_tokens, rows);
    return staged;
  }

  void dropout(float* x, const DropoutSite& site, int64_t B, int64_t per_sample) {
    if (site.p == 0.0f) return;
    check_dropout_site(site, B, per_sample);
    cuda::dropout_apply(x, random_key(site.seed, RandomPurpose::Dropout),
                        static_cast<uint32_t>(site.step), static_cast<uint32_t>(site.first_sample),
                        site.site, site.p, B, per_sample);
  }

  std::vector<Tensor> attention_work_;  // attention/MHA backward transients (attention_layers.h)
  // run.attention_backend split's window engine: the hand kernel on this backend's ops.
  mutable cuda::KernelWindow<CudaBackend> kernel_window_{*this};
  std::vector<Tensor> decode_work_;  // one decoding call's transients (decode_layers.h)
  std::array<DeviceBuffer<float>, kScratchSlots> scratch_;
  DeviceBuffer<float> ffn_hidden_;  // ffn_backward's hidden gradient [rows, width]
  DeviceBuffer<int32_t> tokens_;    // the current op's token ids [rows]
};

}  // namespace

std::string cuda_unavailable_reason() {
  // Asked once: the answer cannot change within a process (CUDA fixes its devices at init).
  static const std::string reason = [] {
    std::string error;
    if (cuda::device_count(&error) > 0) return std::string();
    return "no CUDA device: " +
           (error.empty() ? std::string("cudaGetDeviceCount found none") : error);
  }();
  return reason;
}

Backend& cuda_backend() {
  static CudaBackend backend;
  return backend;
}

}  // namespace hg
