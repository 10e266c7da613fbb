// Q/K/V projections, forward and backward side by side (see qkv_projection.h).
#include "layers/cpu/qkv_projection.h"

#include <cstdint>
#include <memory>

#include "core/error.h"
#include "core/gemm.h"
#include "layers/cpu/grow_buffer.h"
#include "layers/linear.h"
#include "layers/weight_gradients.h"

namespace hg {

namespace {

// At train.precision bf16 (ARCHITECTURE.md §9.1) each operand is rounded once for every product
// that reads it, instead of once per product: the input three times in the forward (self-attention
// reads u for Q, K and V) and again for the three dW products, each projection's gradient for its
// dW and dX products. The same bits as rounding per product (gemm_bf16_copies).
struct Bf16Inputs {
  std::unique_ptr<uint16_t[]> q_owned, kv_owned;
  const uint16_t* q = nullptr;
  const uint16_t* kv = nullptr;
};
Bf16Inputs bf16_inputs(const float* q_in, const float* kv_in, int64_t d, int64_t rows_q,
                       int64_t rows_kv) {
  Bf16Inputs in;
  in.q_owned = bf16_copy_of(q_in, rows_q, d, d);
  in.q = in.q_owned.get();
  if (kv_in == q_in && rows_kv == rows_q) {
    in.kv = in.q;
  } else {
    in.kv_owned = bf16_copy_of(kv_in, rows_kv, d, d);
    in.kv = in.kv_owned.get();
  }
  return in;
}

void qkv_forward_bf16(float* q, float* k, float* v, const float* q_in, const float* kv_in,
                      const QkvWeights& w, int64_t d, int64_t HE, int64_t ldw, int64_t rows_q,
                      int64_t rows_kv) {
  const Bf16Inputs in = bf16_inputs(q_in, kv_in, d, rows_q, rows_kv);
  linear_forward_bf16(q, in.q, w.wq, nullptr, rows_q, d, HE, ldw);
  linear_forward_bf16(k, in.kv, w.wk, nullptr, rows_kv, d, HE, ldw);
  linear_forward_bf16(v, in.kv, w.wv, nullptr, rows_kv, d, HE, ldw);
}

void qkv_backward_bf16(float* dq_in, float* dkv_in, const QkvWeights& g, const float* dq,
                       const float* dk, const float* dv, const float* q_in, const float* kv_in,
                       const QkvWeights& w, int64_t d, int64_t HE, int64_t ldw, int64_t rows_q,
                       int64_t rows_kv, const QkvGrads16* given16) {
  // Under zbh1 the dW products are deferred and copy float32 operands: no input copies then.
  const bool dw_now = deferred_weight_gradients() == nullptr &&
                      (g.wq != nullptr || g.wk != nullptr || g.wv != nullptr);
  const Bf16Inputs in = dw_now ? bf16_inputs(q_in, kv_in, d, rows_q, rows_kv) : Bf16Inputs{};
  // A projection gradient nobody reads (no dW, no input gradient) may be null: no copy; one
  // given as bf16 alone is used as it is.
  auto copy = [HE](bool read, const float* x, int64_t rows) {
    return read && x != nullptr ? bf16_copy_of(x, rows, HE, HE) : nullptr;
  };
  const auto dq16_owned = copy(g.wq != nullptr || dq_in != nullptr, dq, rows_q);
  const auto dk16_owned = copy(g.wk != nullptr || dkv_in != nullptr, dk, rows_kv);
  const auto dv16_owned = copy(g.wv != nullptr || dkv_in != nullptr, dv, rows_kv);
  const QkvGrads16 g16 = given16 != nullptr
                             ? *given16
                             : QkvGrads16{dq16_owned.get(), dk16_owned.get(), dv16_owned.get()};
  // dW[:, :H·e] += inputᵀ · dprojection
  if (g.wq != nullptr)
    linear_backward_bf16(nullptr, g.wq, nullptr, dq, g16.dq, q_in, in.q, w.wq, rows_q, d, HE, ldw);
  if (g.wk != nullptr)
    linear_backward_bf16(nullptr, g.wk, nullptr, dk, g16.dk, kv_in, in.kv, w.wk, rows_kv, d, HE,
                         ldw);
  if (g.wv != nullptr)
    linear_backward_bf16(nullptr, g.wv, nullptr, dv, g16.dv, kv_in, in.kv, w.wv, rows_kv, d, HE,
                         ldw);
  // The input gradients are summed in the fixed order Q, K, V (bit-reproducible).
  if (dq_in != nullptr)
    gemm_bf16_copies(false, true, rows_q, d, HE, 1.0f, dq, HE, g16.dq, w.wq, ldw, nullptr, 0.0f,
                     dq_in, d);
  if (dkv_in != nullptr) {
    const float beta = dkv_in == dq_in ? 1.0f : 0.0f;  // self-attention: add to dQ Wqᵀ
    gemm_bf16_copies(false, true, rows_kv, d, HE, 1.0f, dk, HE, g16.dk, w.wk, ldw, nullptr, beta,
                     dkv_in, d);
    gemm_bf16_copies(false, true, rows_kv, d, HE, 1.0f, dv, HE, g16.dv, w.wv, ldw, nullptr, 1.0f,
                     dkv_in, d);
  }
}

}  // namespace

void qkv_projection_forward(float* q, float* k, float* v, const float* q_in, const float* kv_in,
                            const QkvWeights& w, int64_t d, int64_t HE, int64_t ldw, int64_t rows_q,
                            int64_t rows_kv) {
  if (matmul_precision() == MatmulPrecision::Bf16)
    return qkv_forward_bf16(q, k, v, q_in, kv_in, w, d, HE, ldw, rows_q, rows_kv);
  linear_forward(q, q_in, w.wq, nullptr, rows_q, d, HE, ldw);
  linear_forward(k, kv_in, w.wk, nullptr, rows_kv, d, HE, ldw);
  linear_forward(v, kv_in, w.wv, nullptr, rows_kv, d, HE, ldw);
}

void qkv_projection_backward(float* dq_in, float* dkv_in, const QkvWeights& g, const float* dq,
                             const float* dk, const float* dv, const float* q_in,
                             const float* kv_in, const QkvWeights& w, int64_t d, int64_t HE,
                             int64_t ldw, int64_t rows_q, int64_t rows_kv,
                             const QkvGrads16* given16) {
  if (matmul_precision() == MatmulPrecision::Bf16)
    return qkv_backward_bf16(dq_in, dkv_in, g, dq, dk, dv, q_in, kv_in, w, d, HE, ldw, rows_q,
                             rows_kv, given16);
  require(given16 == nullptr, "qkv_projection_backward: bfloat16 gradients at fp32");
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
