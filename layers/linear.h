// Linear layer y = x W + b with W stored [in, out] row-major (ARCHITECTURE.md notation).
// `ldw` is W's row stride: a column prefix of a wider matrix (MatFormer w1[:, :w]) is
// out_dim = w with ldw = F. bias may be null.
#pragma once
#include <cstdint>

namespace hg {

// inp [rows, in_dim] -> out [rows, out_dim] (=).
void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                    int64_t rows, int64_t in_dim, int64_t out_dim, int64_t ldw);
// dinp [rows, in_dim] (=, skipped when null); dweight [in_dim, ldw] (+=, skipped when null; under
// zbh1 deferred to the micro-batch's W, layers/weight_gradients.h); dbias (+=, may be null).
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t rows, int64_t in_dim, int64_t out_dim,
                     int64_t ldw);

// At train.precision bf16 (ARCHITECTURE.md §9.1), the forward with inp given as its bfloat16
// copy (core/gemm.h's gemm_bf16_copies; inp16 dense [rows, in_dim]), and the backward with
// dout's and/or inp's copies where the caller has them (null: the product rounds that operand, as
// linear_backward does; inp may be null where inp16 is given, and dout where dout16 is given and
// dbias is null). The same bits as the float32
// forms at bf16; only for bf16 (a logic error at fp32). The CPU FFN keeps its hidden activation
// and gradient as such copies (layers/cpu/ffn.cpp).
void linear_forward_bf16(float* out, const uint16_t* inp16, const float* weight, const float* bias,
                         int64_t rows, int64_t in_dim, int64_t out_dim, int64_t ldw);
void linear_backward_bf16(float* dinp, float* dweight, float* dbias, const float* dout,
                          const uint16_t* dout16, const float* inp, const uint16_t* inp16,
                          const float* weight, int64_t rows, int64_t in_dim, int64_t out_dim,
                          int64_t ldw);

}  // namespace hg
