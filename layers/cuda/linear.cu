// Linear layer y = x W + b on the device (layers/linear.h): the products through cuBLAS, the
// bias broadcast and the bias gradient's column sums as kernels (linear_kernels.cuh).
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
  run_linear_forward(DeviceLaunch{}, gemm, out, inp, weight, bias, rows, in_dim, out_dim, ldw);
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t rows, int64_t in_dim, int64_t out_dim,
                     int64_t ldw) {
  run_linear_backward(DeviceLaunch{}, gemm, dinp, dweight, dbias, dout, inp, weight, rows, in_dim,
                      out_dim, ldw);
}

}  // namespace hg::cuda
