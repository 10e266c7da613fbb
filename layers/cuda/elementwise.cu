// Element-wise ops on device buffers (core/elementwise.h's contract); kernels in
// elementwise_kernels.cuh. COMPILED, NOT RUN (no GPU on this project's machines).
#include "core/cuda/check.h"
#include "layers/cuda/elementwise_kernels.cuh"
#include "layers/cuda/ops.h"

namespace hg::cuda {

void add_into(float* y, const float* x, int64_t n) { launch_add_into(DeviceLaunch{}, y, x, n); }

void add(float* out, const float* a, const float* b, int64_t n) {
  launch_add(DeviceLaunch{}, out, a, b, n);
}

void copy(float* out, const float* x, int64_t n) {
  if (n == 0 || out == x) return;
  // Asynchronous on the default stream, ordered with the kernels around it.
  check(cudaMemcpyAsync(out, x, sizeof(float) * n, cudaMemcpyDeviceToDevice), "copy (D2D)");
}

void zero(float* x, int64_t n) {
  if (n > 0) check(cudaMemsetAsync(x, 0, sizeof(float) * n), "zero (memset)");
}

void scale(float* y, float s, int64_t n) { launch_scale(DeviceLaunch{}, y, s, n); }

void add_row_bias(float* out, const float* bias, int64_t rows, int64_t d) {
  launch_add_row_bias(DeviceLaunch{}, out, bias, rows, d);
}

}  // namespace hg::cuda
