// The Q/K/V projections (no bias) shared by block self-attention (attention.h) and attention
// resampling (mha.h): Q = q_in Wq, K = kv_in Wk, V = kv_in Wv. Self-attention passes the same
// input as q_in and kv_in; resampling takes queries from one sequence and keys/values from the
// other. Under tensor parallelism the weights are the rank's column slices [d, H·e], stored
// contiguously, so H·e is also their row stride `ldw`; block attention over the first H of S
// stored heads (MatFormer heads, ARCHITECTURE.md §9.6) uses columns [0, H·e) of [d, S·e]
// weights, ldw = S·e.
#pragma once
#include <cstdint>
#include <vector>

#include "layers/attention.h"

namespace hg {

// The three weights, or their gradients (a null gradient is not computed).
struct QkvWeights {
  float* wq = nullptr;  // [d, ldw], columns [0, H·e) used
  float* wk = nullptr;  // [d, ldw]
  float* wv = nullptr;  // [d, ldw]
};

// q_in [rows_q, d] -> q [rows_q, H·e] (=);  kv_in [rows_kv, d] -> k, v [rows_kv, H·e] (=).
void qkv_projection_forward(float* q, float* k, float* v, const float* q_in, const float* kv_in,
                            const QkvWeights& w, int64_t d, int64_t HE, int64_t ldw, int64_t rows_q,
                            int64_t rows_kv);
// dq_in [rows_q, d] = dQ Wqᵀ (=) and dkv_in [rows_kv, d] = dK Wkᵀ + dV Wvᵀ (=), each skipped when
// null; self-attention passes one buffer as both and gets dQ Wqᵀ + dK Wkᵀ + dV Wvᵀ. Weight grads
// (+=) for the non-null pointers of `g` (same row stride ldw; columns past H·e untouched).
// At train.precision bf16 the projections' gradients may come as their bfloat16 copies alone
// (dense [rows, H·e], as the block's DConv backward writes them): `given16`, with dq, dk, dv null.
struct QkvGrads16 {
  const uint16_t* dq = nullptr;
  const uint16_t* dk = nullptr;
  const uint16_t* dv = nullptr;
};
void qkv_projection_backward(float* dq_in, float* dkv_in, const QkvWeights& g, const float* dq,
                             const float* dk, const float* dv, const float* q_in,
                             const float* kv_in, const QkvWeights& w, int64_t d, int64_t HE,
                             int64_t ldw, int64_t rows_q, int64_t rows_kv,
                             const QkvGrads16* given16 = nullptr);

// Block self-attention's projections of u [rows, d] (training forward and decoding alike): the
// buffers grow to [rows, H·e]; with cfg.dconv the projections go to q_lin, k_lin, v_lin (the
// caller's DConv then writes q, k, v), without it straight to q, k, v (the *_lin pointers alias
// them). Weights are read with qkv_row_stride(cfg).
struct SelfQkv {
  float *q, *k, *v, *q_lin, *k_lin, *v_lin;
};
struct SelfQkvBuffers {
  std::vector<float>&q, &k, &v, &q_lin, &k_lin, &v_lin;
};
SelfQkv self_qkv_projection_forward(const SelfQkvBuffers& buffers, const float* u,
                                    const AttentionParams& w, const AttentionConfig& cfg,
                                    int64_t rows);

}  // namespace hg
