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

namespace hg::cuda {

// core/elementwise.h on device buffers of n floats (elementwise.cu). out may alias an input.
void add_into(float* y, const float* x, int64_t n);                         // y += x
void add(float* out, const float* a, const float* b, int64_t n);            // out = a + b
void copy(float* out, const float* x, int64_t n);                           // out = x
void scale(float* y, float s, int64_t n);                                   // y *= s
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
// columns); dbias [out_dim] (+=, may be null).
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
// each sequence, Z[<0] = 0. inp, out [B, n, C]; taps [3, C].
void dconv_forward(float* out, const float* inp, const float* taps, int64_t B, int64_t n, int C);
// dinp [B, n, C] (=); dtaps [3, C] (+=).
void dconv_backward(float* dinp, float* dtaps, const float* dout, const float* inp,
                    const float* taps, int64_t B, int64_t n, int C);

// layers/adamw.h: one AdamW update of n values from the host-derived scalars of
// core/adamw_scalars.h, the very AdamWScalars the CPU kernel takes, so both round the same floats.
void adamw_step(float* value, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                const AdamWScalars& k, bool decay);

}  // namespace hg::cuda
