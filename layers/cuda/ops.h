// The CUDA backend's layer ops: each a forward/backward pair with the same contract as the CPU
// layer named beside it (same shapes, same saved values, activation gradients assigned (=),
// parameter gradients accumulated (+=)). Every pointer is device memory; float32 throughout.
//
// COMPILED, NOT RUN: no machine of this project has a GPU. tests/layers runs every Backend op
// (through layers/cuda/cuda_backend.cpp) against the CPU backend, tests/cuda the rest (gemm,
// activation, dconv); both report themselves skipped here; nothing below has executed.
//
// Every op is asynchronous on the default stream (no host synchronisation) except sum and
// sum_squares, whose contracts return host values. A trainer path will add a stream
// argument (docs/cuda.md).
#pragma once
#include <cstdint>

#include "core/adamw_scalars.h"
#include "layers/cuda/attention_operands.h"

namespace hg::cuda {

// core/elementwise.h on device buffers of n floats (elementwise.cu). out may alias an input.
void add_into(float* y, const float* x, int64_t n);                         // y += x
void add(float* out, const float* a, const float* b, int64_t n);            // out = a + b
void copy(float* out, const float* x, int64_t n);                           // out = x
void scale(float* y, float s, int64_t n);                                   // y *= s
void zero(float* x, int64_t n);                                             // x = 0 (all bits)
void add_row_bias(float* out, const float* bias, int64_t rows, int64_t d);  // out[r, :] += bias
// Column sums of a row-major [rows, cols] matrix with row stride ld: dst[c] += Σ_r x[r·ld + c],
// deterministic (reduce.cuh's column-sum shape, no atomics).
void add_column_sums(float* dst, const float* x, int64_t rows, int64_t cols, int64_t ld);

// Σ x and Σ x² in double, in an order fixed by n alone (sum.cu), so the same bits on every run.
// SYNCHRONISE: the results are host values.
double sum(const float* x, int64_t n);
double sum_squares(const float* x, int64_t n);

// layers/linear.h (linear.cu): out [rows, out_dim] (=) = inp [rows, in_dim] · W[:, :out_dim]
// (row stride ldw) + bias (may be null), through cuBLAS.
void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                    int64_t rows, int64_t in_dim, int64_t out_dim, int64_t ldw);
// dinp [rows, in_dim] (=, skipped when null); dweight [in_dim, ldw] (+=, the first out_dim
// columns; skipped when null); dbias [out_dim] (+=, may be null).
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t rows, int64_t in_dim, int64_t out_dim,
                     int64_t ldw);

// layers/layernorm.h. inp, out [rows, groups·C]; gain, bias [groups·C]; mean, rstd [rows·groups]
// saved for backward. eps = 1e-5 (hg::kLayerNormEps), biased variance.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gain,
                       const float* bias, int64_t rows, int groups, int C);
// dinp [rows, groups·C] (=); dgain, dbias [groups·C] (+=).
void layernorm_backward(float* dinp, float* dgain, float* dbias, const float* dout,
                        const float* inp, const float* gain, const float* mean, const float* rstd,
                        int64_t rows, int groups, int C);

// layers/activation.h: relu2 = relu(z)², gelu = tanh form. Element-wise over n values; dinp (=)
// may alias dout.
enum class Activation { Relu2, Gelu };  // hg::Activation, same order
void activation_forward(float* out, const float* inp, int64_t n, Activation act);
void activation_backward(float* dinp, const float* dout, const float* inp, int64_t n,
                         Activation act);

// layers/cross_entropy.h. logits [rows, V], targets [rows] -> losses [rows] (=), in nats.
// The CPU layer throws on a target outside [0, V); here that would need a host synchronisation,
// so such a row gets a NaN loss (and NaN dlogits) instead: the caller validates targets on the
// host, where the data loader produces them.
void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t rows,
                           int V);
// dlogits [rows, V] (=) = scale · (softmax(logits) - onehot(target)); may alias logits.
void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            float scale, int64_t rows, int V);

// layers/embedding.h. tokens [rows] -> out [rows, d] (=); tokens must lie in [0, V).
void embedding_forward(float* out, const int32_t* tokens, const float* weight, int64_t rows, int d);
// dweight [V, d] (+=), deterministic and bit-identical to the CPU layer (embedding.cu says how).
void embedding_backward(float* dweight, const float* dout, const int32_t* tokens, int64_t rows,
                        int d);

// layers/dconv.h: out[t, c] = taps[0,c]·Z[t,c] + taps[1,c]·Z[t-1,c] + taps[2,c]·Z[t-2,c] within
// each sequence, Z[<0] = 0. inp, out [B, n, C]; taps [3, ldt], columns [0, C) used.
void dconv_forward(float* out, const float* inp, const float* taps, int64_t B, int64_t n, int C,
                   int64_t ldt);
// dinp [B, n, C] (=); dtaps [3, ldt] (+=, columns [0, C) only).
void dconv_backward(float* dinp, float* dtaps, const float* dout, const float* inp,
                    const float* taps, int64_t B, int64_t n, int C, int64_t ldt);

// layers/resample.h (resample.cu): ShiftRight, average pooling, repeat upsampling; inp/out
// [B, n, d] (shift), [B, n, d] -> [B, n/k, d] (pool), [B, m, d] -> [B, m·k, d] (repeat).
// Activation gradients (=). The linear pool and upsampler (linear layers on reshaped rows, as on
// the CPU): pool/weight [k·d, d], up/linear/weight [d, k·d]; parameter gradients (+=).
void shift_right_forward(float* out, const float* inp, int64_t B, int64_t n, int d, int s);
void shift_right_backward(float* dinp, const float* dout, int64_t B, int64_t n, int d, int s);
void pool_avg_forward(float* out, const float* inp, int64_t B, int64_t n, int d, int k);
void pool_avg_backward(float* dinp, const float* dout, int64_t B, int64_t n, int d, int k);
void pool_linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                         int64_t B, int64_t n, int d, int k);
void pool_linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, int64_t B, int64_t n, int d,
                          int k);
void upsample_linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                             int64_t B, int64_t m, int d, int k);
void upsample_linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                              const float* inp, const float* weight, int64_t B, int64_t m, int d,
                              int k);
void upsample_repeat_forward(float* out, const float* inp, int64_t B, int64_t m, int d, int k);
void upsample_repeat_backward(float* dinp, const float* dout, int64_t B, int64_t m, int d, int k);

// layers/dropout.h (dropout.cu): x [B, per_sample] in place, kept iff the Philox draw of
// (step, first_sample + b, site, element) under key (random_key(seed, Dropout)) is >= p, kept
// values times 1/(1-p); the same map serves forward and backward. The caller checks the site
// (check_dropout_site) and skips p = 0.
void dropout_apply(float* x, uint64_t key, uint32_t step, uint32_t first_sample, uint32_t site,
                   float p, int64_t B, int64_t per_sample);

// Attention (attention.cu; composed into the layers by attention_layers.h). One softmax over both
// key segments of `x.mask` (attention_operands.h): out [B, nq, H·e] (=), lse [B·H, nq] saved for
// the backward. check_attention_operands (attention_operands.h) gives the kernels' limits.
void attention_core_forward(float* out, float* lse, const AttentionOperands& x);
// Decoding (layers/cuda/decode_layers.h): the same softmax for query rows at positions
// at.q0 .. at.q0 + x.nq - 1 against keys kept in caches (attention_operands.h's QueryPlacement);
// out [B, nq, H·e] (=), no log-sum-exp.
void attention_core_decode(float* out, const AttentionOperands& x, const QueryPlacement& at);
// dq_* (=), dk_*/dv_* (+=); delta [B·H, nq] is a workspace; out and lse from the forward.
void attention_core_backward(const AttentionGrads& g, float* delta, const float* dout,
                             const float* out, const float* lse, const AttentionOperands& x);
// The split attention's merge (attention_split.h, attention_split_kernels.cuh): out [B, nq, H·e]
// and lse [B·H, nq] (=) of the joint softmax from the two segments' own outputs and log-sum-exps.
void attention_merge(float* out, float* lse, const float* out_a, const float* lse_a,
                     const float* out_b, const float* lse_b, const AttentionOperands& x);
// n floats to bfloat16 bit patterns (core/bf16.h's rounding) and back (exact; += when accumulate):
// a fused attention's operands and results (cudnn_attention.cpp).
void round_to_bf16(uint16_t* out, const float* x, int64_t n);
void widen_bf16(float* y, const uint16_t* x, int64_t n, bool accumulate);
// layers/rope.h on x [B, n, H·e] in place, cos/sin [n, e/2] the host table's device copies;
// inverse = the backward's rotation.
void rope(float* x, const float* cos_table, const float* sin_table, int64_t B, int64_t n, int H,
          int e, bool inverse);
// layers/cpu/attention_compress.h's four functions, same arguments and (=)/(+=).
void chunk_softmax_forward(float* probs, const float* logits, int64_t B, int64_t n, int l,
                           int cols);
void chunk_softmax_backward(float* dlogits, const float* dprobs, const float* probs, int64_t B,
                            int64_t n, int l, int cols);
void chunk_compress_forward(float* comp, const float* x, const float* probs, int64_t B, int64_t n,
                            int l, int H, int r, int e);
void chunk_compress_backward(float* dx, float* dprobs, const float* dcomp, const float* x,
                             const float* probs, int64_t B, int64_t n, int l, int H, int r, int e);

// layers/adamw.h: one AdamW update of n values from the host-derived scalars of
// core/adamw_scalars.h, the very AdamWScalars the CPU kernel takes, so both round the same floats.
void adamw_step(float* value, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                const AdamWScalars& k, bool decay);

}  // namespace hg::cuda
