// Q/K/V projections, forward and backward side by side (see qkv_projection.h).
#include "layers/cpu/qkv_projection.h"

#include "core/gemm.h"
#include "layers/cpu/grow_buffer.h"
#include "layers/linear.h"

namespace hg {

void qkv_projection_forward(float* q, float* k, float* v, const float* q_in, const float* kv_in,
                            const QkvWeights& w, int64_t d, int64_t HE, int64_t ldw, int64_t rows_q,
                            int64_t rows_kv) {
  linear_forward(q, q_in, w.wq, nullptr, rows_q, d, HE, ldw);
  linear_forward(k, kv_in, w.wk, nullptr, rows_kv, d, HE, ldw);
  linear_forward(v, kv_in, w.wv, nullptr, rows_kv, d, HE, ldw);
}

void qkv_projection_backward(float* dq_in, float* dkv_in, const QkvWeights& g, const float* dq,
                             const float* dk, const float* dv, const float* q_in,
                             const float* kv_in, const QkvWeights& w, int64_t d, int64_t HE,
                             int64_t ldw, int64_t rows_q, int64_t rows_kv) {
  // dW[:, :H·e] += inputᵀ · dprojection
  if (g.wq != nullptr) linear_backward(nullptr, g.wq, nullptr, dq, q_in, w.wq, rows_q, d, HE, ldw);
  if (g.wk != nullptr)
    linear_backward(nullptr, g.wk, nullptr, dk, kv_in, w.wk, rows_kv, d, HE, ldw);
  if (g.wv != nullptr)
    linear_backward(nullptr, g.wv, nullptr, dv, kv_in, w.wv, rows_kv, d, HE, ldw);
  // The input gradients are summed in the fixed order Q, K, V (bit-reproducible).
  if (dq_in != nullptr) gemm(false, true, rows_q, d, HE, 1.0f, dq, HE, w.wq, ldw, 0.0f, dq_in, d);
  if (dkv_in != nullptr) {
    const float beta = dkv_in == dq_in ? 1.0f : 0.0f;  // self-attention: add to dQ Wqᵀ
    gemm(false, true, rows_kv, d, HE, 1.0f, dk, HE, w.wk, ldw, beta, dkv_in, d);
    gemm(false, true, rows_kv, d, HE, 1.0f, dv, HE, w.wv, ldw, 1.0f, dkv_in, d);
  }
}

SelfQkv self_qkv_projection_forward(const SelfQkvBuffers& b, const float* u,
                                    const AttentionParams& w, const AttentionConfig& cfg,
                                    int64_t rows) {
  const int64_t HE = static_cast<int64_t>(cfg.heads) * cfg.head_dim;
  SelfQkv p;
  p.q = grow(b.q, rows * HE);
  p.k = grow(b.k, rows * HE);
  p.v = grow(b.v, rows * HE);
  p.q_lin = cfg.dconv ? grow(b.q_lin, rows * HE) : p.q;
  p.k_lin = cfg.dconv ? grow(b.k_lin, rows * HE) : p.k;
  p.v_lin = cfg.dconv ? grow(b.v_lin, rows * HE) : p.v;
  qkv_projection_forward(p.q_lin, p.k_lin, p.v_lin, u, u, {w.wq, w.wk, w.wv}, cfg.d, HE,
                         qkv_row_stride(cfg), rows, rows);
  return p;
}

}  // namespace hg
