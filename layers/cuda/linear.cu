// Linear layer y = x W + b on the device (layers/linear.h): the products through cuBLAS, the
// bias broadcast (elementwise.cu) and the bias gradient's column sums (linear_kernels.cuh).
// COMPILED, NOT RUN (no GPU on this project's machines).
#include "core/cuda/check.h"
#include "core/cuda/device.h"
#include "layers/cuda/linear_kernels.cuh"
#include "layers/cuda/ops.h"

namespace hg::cuda {

void add_column_sums(float* dst, const float* x, int64_t rows, int64_t cols, int64_t ld) {
  launch_add_column_sums(DeviceLaunch{}, dst, x, rows, cols, ld);
}

void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                    int64_t rows, int64_t in_dim, int64_t out_dim, int64_t ldw) {
  if (rows == 0) return;
  // out [rows, out_dim] = inp [rows, in_dim] · W[:, :out_dim] (row stride ldw)
  gemm(false, false, rows, out_dim, in_dim, 1.0f, inp, in_dim, weight, ldw, 0.0f, out, out_dim);
  if (bias != nullptr) add_row_bias(out, bias, rows, out_dim);
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t rows, int64_t in_dim, int64_t out_dim,
                     int64_t ldw) {
  if (rows == 0) return;
  // dinp [rows, in_dim] = dout [rows, out_dim] · W[:, :out_dim]ᵀ
  if (dinp != nullptr)
    gemm(false, true, rows, in_dim, out_dim, 1.0f, dout, out_dim, weight, ldw, 0.0f, dinp, in_dim);
  // dW[:, :out_dim] += inpᵀ · dout (beta 1); columns past out_dim are left untouched.
  gemm(true, false, in_dim, out_dim, rows, 1.0f, inp, in_dim, dout, out_dim, 1.0f, dweight, ldw);
  if (dbias != nullptr) add_column_sums(dbias, dout, rows, out_dim, out_dim);
}

}  // namespace hg::cuda
