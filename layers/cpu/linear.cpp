// Linear layer y = x W + b (W [in, out] row-major), forward/backward through hg::gemm.
#include "layers/linear.h"

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

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t rows, int64_t in_dim, int64_t out_dim,
                     int64_t ldw) {
  // dinp [rows, in_dim] = dout [rows, out_dim] · W[:, :out_dim]ᵀ
  if (dinp != nullptr)
    gemm(false, true, rows, in_dim, out_dim, 1.0f, dout, out_dim, weight, ldw, 0.0f, dinp, in_dim);
  // dW[:, :out_dim] [in_dim, out_dim] += inpᵀ · dout; columns past out_dim are left untouched.
  // Under zbh1 the product waits for the micro-batch's W (layers/weight_gradients.h).
  if (dweight == nullptr) {
    // no weight gradient wanted
  } else if (DeferredWeightGradients* queue = deferred_weight_gradients()) {
    queue->record(dweight, inp, dout, rows, in_dim, out_dim, ldw);
  } else {
    gemm(true, false, in_dim, out_dim, rows, 1.0f, inp, in_dim, dout, out_dim, 1.0f, dweight, ldw);
  }
  if (dbias != nullptr) add_column_sums(dbias, dout, rows, out_dim, out_dim);
}

}  // namespace hg
