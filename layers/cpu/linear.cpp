// Linear layer y = x W + b (W [in, out] row-major), forward/backward through hg::gemm.
#include "layers/linear.h"

#include <cstdint>
#include <memory>

#include "core/gemm.h"
#include "core/parallel_for.h"
#include "layers/cpu/row_reduce.h"
#include "layers/weight_gradients.h"

namespace hg {

void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                    int64_t rows, int64_t in_dim, int64_t out_dim, int64_t ldw) {
  // out [rows, out_dim] = inp [rows, in_dim] · W[:, :out_dim] (row stride ldw)
  gemm(false, false, rows, out_dim, in_dim, 1.0f, inp, in_dim, weight, ldw, 0.0f, out, out_dim);
  if (bias == nullptr) return;
  parallel_for(rows, [&](int64_t r) {
    float* y = out + r * out_dim;
    for (int64_t c = 0; c < out_dim; ++c) y[c] += bias[c];
  });
}

namespace {

// At bf16, dout is rounded once for both products that read it (the dX product's A, the dW
// product's B) instead of once each; null when only one product reads it here.
std::unique_ptr<uint16_t[]> shared_dout_copy(const float* dout, int64_t rows, int64_t out_dim,
                                             bool both_products) {
  if (!both_products || matmul_precision() != MatmulPrecision::Bf16) return nullptr;
  // Uninitialised on purpose: bf16_copy writes every element.
  std::unique_ptr<uint16_t[]> copy(new uint16_t[static_cast<size_t>(rows * out_dim)]);
  bf16_copy(copy.get(), dout, rows, out_dim, out_dim);
  return copy;
}

}  // namespace

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t rows, int64_t in_dim, int64_t out_dim,
                     int64_t ldw) {
  // Under zbh1 the dW product waits for the micro-batch's W (layers/weight_gradients.h).
  DeferredWeightGradients* queue = dweight != nullptr ? deferred_weight_gradients() : nullptr;
  const std::unique_ptr<uint16_t[]> dout16 =
      shared_dout_copy(dout, rows, out_dim, dinp != nullptr && dweight != nullptr && !queue);
  // dinp [rows, in_dim] = dout [rows, out_dim] · W[:, :out_dim]ᵀ
  if (dinp == nullptr) {
    // no input gradient wanted
  } else if (dout16) {
    gemm_bf16_copies(false, true, rows, in_dim, out_dim, 1.0f, dout, out_dim, dout16.get(), weight,
                     ldw, nullptr, 0.0f, dinp, in_dim);
  } else {
    gemm(false, true, rows, in_dim, out_dim, 1.0f, dout, out_dim, weight, ldw, 0.0f, dinp, in_dim);
  }
  // dW[:, :out_dim] [in_dim, out_dim] += inpᵀ · dout; columns past out_dim are left untouched.
  if (dweight == nullptr) {
    // no weight gradient wanted
  } else if (queue) {
    queue->record(dweight, inp, dout, rows, in_dim, out_dim, ldw);
  } else if (dout16) {
    gemm_bf16_copies(true, false, in_dim, out_dim, rows, 1.0f, inp, in_dim, nullptr, dout, out_dim,
                     dout16.get(), 1.0f, dweight, ldw);
  } else {
    gemm(true, false, in_dim, out_dim, rows, 1.0f, inp, in_dim, dout, out_dim, 1.0f, dweight, ldw);
  }
  if (dbias != nullptr) add_column_sums(dbias, dout, rows, out_dim, out_dim);
}

}  // namespace hg
