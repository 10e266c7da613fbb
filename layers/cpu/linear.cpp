// Linear layer y = x W + b (W [in, out] row-major), forward/backward through hg::gemm.
#include "layers/linear.h"

#include <cstdint>
#include <memory>
#include <vector>

#include "core/bf16.h"
#include "core/gemm.h"
#include "core/parallel_for.h"
#include "layers/cpu/row_reduce.h"
#include "layers/weight_gradients.h"

namespace hg {

namespace {

// out [rows, out_dim] += bias, row by row.
void add_bias(float* out, const float* bias, int64_t rows, int64_t out_dim) {
  if (bias == nullptr) return;
  parallel_for(rows, [&](int64_t r) {
    float* y = out + r * out_dim;
    for (int64_t c = 0; c < out_dim; ++c) y[c] += bias[c];
  });
}

// bits as float32 in `buffer` (exact), for an operand that exists only as its bfloat16 copy.
const float* widened(std::vector<float>& buffer, const uint16_t* bits, int64_t n) {
  buffer.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) buffer[i] = bf16_to_float(bits[i]);
  return buffer.data();
}

// dW[:, :out_dim] [in_dim, out_dim] += inpᵀ · dout; columns past out_dim are left untouched.
// Under zbh1 the product waits for the micro-batch's W (layers/weight_gradients.h), which copies
// float32 operands: an operand given only as bf16 is widened for it (exact), and its later gemm
// rounds them back to the same bfloat16, so the bits are the fused backward's.
void weight_gradient(float* dweight, const float* dout, const uint16_t* dout16, const float* inp,
                     const uint16_t* inp16, int64_t rows, int64_t in_dim, int64_t out_dim,
                     int64_t ldw) {
  if (DeferredWeightGradients* queue = deferred_weight_gradients()) {
    std::vector<float> widened_inp, widened_dout;
    if (inp == nullptr) inp = widened(widened_inp, inp16, rows * in_dim);
    if (dout == nullptr) dout = widened(widened_dout, dout16, rows * out_dim);
    queue->record(dweight, inp, dout, rows, in_dim, out_dim, ldw);
  } else if (dout16 != nullptr || inp16 != nullptr) {
    gemm_bf16_copies(true, false, in_dim, out_dim, rows, 1.0f, inp, in_dim, inp16, dout, out_dim,
                     dout16, 1.0f, dweight, ldw);
  } else {
    gemm(true, false, in_dim, out_dim, rows, 1.0f, inp, in_dim, dout, out_dim, 1.0f, dweight, ldw);
  }
}

}  // namespace

void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                    int64_t rows, int64_t in_dim, int64_t out_dim, int64_t ldw) {
  // out [rows, out_dim] = inp [rows, in_dim] · W[:, :out_dim] (row stride ldw)
  gemm(false, false, rows, out_dim, in_dim, 1.0f, inp, in_dim, weight, ldw, 0.0f, out, out_dim);
  add_bias(out, bias, rows, out_dim);
}

void linear_forward_bf16(float* out, const uint16_t* inp16, const float* weight, const float* bias,
                         int64_t rows, int64_t in_dim, int64_t out_dim, int64_t ldw) {
  gemm_bf16_copies(false, false, rows, out_dim, in_dim, 1.0f, nullptr, in_dim, inp16, weight, ldw,
                   nullptr, 0.0f, out, out_dim);
  add_bias(out, bias, rows, out_dim);
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t rows, int64_t in_dim, int64_t out_dim,
                     int64_t ldw) {
  // At bf16, dout is rounded once for both products that read it (the dX product's A, the dW
  // product's B) instead of once each, unless zbh1 defers the dW product.
  if (matmul_precision() == MatmulPrecision::Bf16 && dinp != nullptr && dweight != nullptr &&
      deferred_weight_gradients() == nullptr) {
    const std::unique_ptr<uint16_t[]> dout16 = bf16_copy_of(dout, rows, out_dim, out_dim);
    linear_backward_bf16(dinp, dweight, dbias, dout, dout16.get(), inp, nullptr, weight, rows,
                         in_dim, out_dim, ldw);
    return;
  }
  // dinp [rows, in_dim] = dout [rows, out_dim] · W[:, :out_dim]ᵀ
  if (dinp != nullptr)
    gemm(false, true, rows, in_dim, out_dim, 1.0f, dout, out_dim, weight, ldw, 0.0f, dinp, in_dim);
  if (dweight != nullptr)
    weight_gradient(dweight, dout, nullptr, inp, nullptr, rows, in_dim, out_dim, ldw);
  if (dbias != nullptr) add_column_sums(dbias, dout, rows, out_dim, out_dim);
}

void linear_backward_bf16(float* dinp, float* dweight, float* dbias, const float* dout,
                          const uint16_t* dout16, const float* inp, const uint16_t* inp16,
                          const float* weight, int64_t rows, int64_t in_dim, int64_t out_dim,
                          int64_t ldw) {
  if (dinp != nullptr)
    gemm_bf16_copies(false, true, rows, in_dim, out_dim, 1.0f, dout, out_dim, dout16, weight, ldw,
                     nullptr, 0.0f, dinp, in_dim);
  if (dweight != nullptr)
    weight_gradient(dweight, dout, dout16, inp, inp16, rows, in_dim, out_dim, ldw);
  if (dbias != nullptr) add_column_sums(dbias, dout, rows, out_dim, out_dim);
}

}  // namespace hg
