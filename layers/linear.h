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
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int64_t rows, int64_t in_dim,
                     int64_t out_dim, int64_t ldw);

}  // namespace hg
