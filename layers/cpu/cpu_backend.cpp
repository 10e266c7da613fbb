// The CPU backend: the layer kernels of layers/*.cpp on host memory, OpenMP inside each. It is
// the reference every other backend is tested against.
#include <array>
#include <vector>

#include "core/elementwise.h"
#include "core/parallel_for.h"
#include "layers/adamw.h"
#include "layers/backend.h"
#include "layers/cpu/grow_buffer.h"
#include "layers/cross_entropy.h"
#include "layers/embedding.h"
#include "layers/layernorm.h"
#include "layers/linear.h"
#include "layers/resample.h"

namespace hg {
namespace {

// Per calling thread, shared by every caller on it; buffers grow and never shrink.
struct ThreadWorkspace {
  std::array<std::vector<float>, Backend::kScratchSlots> slots;
  std::vector<float> ffn_hidden;  // ffn_backward's hidden gradient [rows, width]
};
ThreadWorkspace& thread_workspace() {
  thread_local ThreadWorkspace ws;
  return ws;
}

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::Cpu; }
  float* scratch(int slot, int64_t n) override {
    return grow(thread_workspace().slots.at(slot), n);
  }

  void add_into(float* y, const float* x, int64_t n) override { hg::add_into(y, x, n); }
  void add(float* out, const float* a, const float* b, int64_t n) override {
    hg::add(out, a, b, n);
  }
  void copy(float* out, const float* x, int64_t n) override { hg::copy(out, x, n); }
  void scale(float* y, float s, int64_t n) override { scale_inplace(y, s, n); }
  void add_row_bias(float* out, const float* bias, int64_t rows, int d) override {
    for (int64_t r = 0; r < rows; ++r) hg::add_into(out + r * d, bias, d);
  }
  double sum_squares(const float* x, int64_t n) override { return hg::sum_squares(x, n); }
  // One serial sum per span (its bits do not depend on the thread count), the spans spread over
  // the threads: on one thread the others would only wait.
  void sum_squares_each(const std::vector<Span>& spans, double* sums) override {
    parallel_for_dynamic(static_cast<int64_t>(spans.size()),
                         [&](int64_t i) { sums[i] = hg::sum_squares(spans[i].data, spans[i].n); });
  }
  double sum(const float* x, int64_t n) override {
    double s = 0;  // serial, in index order: the loss must not depend on the thread count
    for (int64_t i = 0; i < n; ++i) s += x[i];
    return s;
  }

  void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                      int64_t rows, int64_t in_dim, int64_t out_dim, int64_t ldw) override {
    hg::linear_forward(out, inp, weight, bias, rows, in_dim, out_dim, ldw);
  }
  void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, int64_t rows, int64_t in_dim,
                       int64_t out_dim, int64_t ldw) override {
    hg::linear_backward(dinp, dweight, dbias, dout, inp, weight, rows, in_dim, out_dim, ldw);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                         const float* bias, int64_t rows, int groups, int C) override {
    hg::layernorm_forward(out, mean, rstd, inp, gain, bias, rows, groups, C);
  }
  void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                          const float* inp, const float* gain, const float* mean, const float* rstd,
                          int64_t rows, int groups, int C) override {
    hg::layernorm_backward(dinp, dgain, dbias, dout, inp, gain, mean, rstd, rows, groups, C);
  }
  void ffn_forward(float* out, FfnCache& cache, const float* inp, const float* w1, const float* b1,
                   const float* w2, const float* b2, int64_t rows, int d, int F, int width,
                   Activation act) override {
    hg::ffn_forward(out, cache, inp, w1, b1, w2, b2, rows, d, F, width, act);
  }
  void ffn_backward(float* dinp, float* dw1, float* db1, float* dw2, float* db2, const float* dout,
                    const FfnCache& cache, const float* inp, const float* w1, const float* w2,
                    int64_t rows, int d, int F, int width, Activation act) override {
    float* hidden = grow(thread_workspace().ffn_hidden, rows * width);
    hg::ffn_backward(dinp, dw1, db1, dw2, db2, dout, cache, inp, w1, w2, rows, d, F, width, act,
                     hidden);
  }
  void dropout_forward(float* x, const DropoutSite& site, int64_t B, int64_t per_sample) override {
    hg::dropout_forward(x, site, B, per_sample);
  }
  void dropout_backward(float* dx, const DropoutSite& site, int64_t B,
                        int64_t per_sample) override {
    hg::dropout_backward(dx, site, B, per_sample);
  }
  void embedding_forward(float* out, const int32_t* tokens, const float* weight, int64_t rows,
                         int d) override {
    hg::embedding_forward(out, tokens, weight, rows, d);
  }
  void embedding_backward(float* dweight, const float* dout, const int32_t* tokens, int64_t rows,
                          int d) override {
    hg::embedding_backward(dweight, dout, tokens, rows, d);
  }
  void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                             int64_t rows, int V) override {
    hg::cross_entropy_forward(losses, logits, targets, rows, V);
  }
  void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                              float scale, int64_t rows, int V) override {
    hg::cross_entropy_backward(dlogits, logits, targets, scale, rows, V);
  }

  void attention_forward(float* out, AttentionCache& cache, const float* u,
                         const AttentionParams& w, const AttentionConfig& cfg, int64_t B,
                         int64_t n) override {
    hg::attention_forward(out, cache, u, w, cfg, B, n);
  }
  void attention_backward(float* du, const AttentionParams& g, const float* dout,
                          const AttentionCache& cache, const float* u, const AttentionParams& w,
                          const AttentionConfig& cfg, int64_t B, int64_t n) override {
    hg::attention_backward(du, g, dout, cache, u, w, cfg, B, n);
  }
  void mha_forward(float* out, MhaCache& cache, const float* q_in, const float* kv_in,
                   const MhaParams& w, int d, int heads, int head_dim, FunnelMask mask, int k,
                   int64_t B, int64_t nq, int64_t nk) override {
    hg::mha_forward(out, cache, q_in, kv_in, w, d, heads, head_dim, mask, k, B, nq, nk);
  }
  void mha_backward(float* dq_in, float* dkv_in, const MhaParams& g, const float* dout,
                    const MhaCache& cache, const float* q_in, const float* kv_in,
                    const MhaParams& w, int d, int heads, int head_dim, FunnelMask mask, int k,
                    int64_t B, int64_t nq, int64_t nk) override {
    hg::mha_backward(dq_in, dkv_in, g, dout, cache, q_in, kv_in, w, d, heads, head_dim, mask, k, B,
                     nq, nk);
  }

  void attention_decode(float* out, AttentionDecodeCache& cache, const float* u,
                        const AttentionParams& w, const AttentionConfig& cfg, int64_t B,
                        int64_t n) override {
    hg::attention_decode(out, cache, u, w, cfg, B, n);
  }
  void mha_decode(float* out, MhaDecodeCache& cache, const float* q_in, const float* kv_in,
                  const MhaParams& w, int d, int heads, int head_dim, FunnelMask mask, int k,
                  int64_t B, int64_t q0, int64_t nq, int64_t nk_new) override {
    hg::mha_decode(out, cache, q_in, kv_in, w, d, heads, head_dim, mask, k, B, q0, nq, nk_new);
  }

  void shift_right_forward(float* out, const float* inp, int64_t B, int64_t n, int d,
                           int s) override {
    hg::shift_right_forward(out, inp, B, n, d, s);
  }
  void shift_right_backward(float* dinp, const float* dout, int64_t B, int64_t n, int d,
                            int s) override {
    hg::shift_right_backward(dinp, dout, B, n, d, s);
  }
  void pool_linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                           int64_t B, int64_t n, int d, int k) override {
    hg::pool_linear_forward(out, inp, weight, bias, B, n, d, k);
  }
  void pool_linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                            const float* inp, const float* weight, int64_t B, int64_t n, int d,
                            int k) override {
    hg::pool_linear_backward(dinp, dweight, dbias, dout, inp, weight, B, n, d, k);
  }
  void pool_avg_forward(float* out, const float* inp, int64_t B, int64_t n, int d, int k) override {
    hg::pool_avg_forward(out, inp, B, n, d, k);
  }
  void pool_avg_backward(float* dinp, const float* dout, int64_t B, int64_t n, int d,
                         int k) override {
    hg::pool_avg_backward(dinp, dout, B, n, d, k);
  }
  void upsample_linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                               int64_t B, int64_t m, int d, int k) override {
    hg::upsample_linear_forward(out, inp, weight, bias, B, m, d, k);
  }
  void upsample_linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                const float* inp, const float* weight, int64_t B, int64_t m, int d,
                                int k) override {
    hg::upsample_linear_backward(dinp, dweight, dbias, dout, inp, weight, B, m, d, k);
  }
  void upsample_repeat_forward(float* out, const float* inp, int64_t B, int64_t m, int d,
                               int k) override {
    hg::upsample_repeat_forward(out, inp, B, m, d, k);
  }
  void upsample_repeat_backward(float* dinp, const float* dout, int64_t B, int64_t m, int d,
                                int k) override {
    hg::upsample_repeat_backward(dinp, dout, B, m, d, k);
  }

  void adamw_step(float* value, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                  const AdamWScalars& k, bool decay) override {
    hg::adamw_step(value, grad, exp_avg, exp_avg_sq, n, k, decay);
  }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace hg
