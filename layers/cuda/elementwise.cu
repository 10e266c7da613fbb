// Element-wise ops on device buffers (core/elementwise.h's contract): residual adds, copies,
// scaling and the row-bias broadcast. COMPILED, NOT RUN (no GPU on this project's machines).
#include <cuda_runtime.h>

#include "core/cuda/check.h"
#include "layers/cuda/ops.h"

namespace hg::cuda {

namespace {

// All four: one thread per element in a grid-stride loop (check.h), consecutive threads on
// consecutive floats, so every access is coalesced; each element is read before it is written,
// so an output may alias an input. Memory-bound: one add or multiply per 8-12 bytes moved.
__global__ void add_into_kernel(float* y, const float* x, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] += x[i];
}

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = a[i] + b[i];
}

__global__ void scale_kernel(float* y, float s, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] *= s;
}

// out[r, c] += bias[c] over the flattened [rows, d]: the bias row (d floats) stays in L1/L2.
__global__ void add_row_bias_kernel(float* out, const float* bias, int64_t rows, int64_t d) {
  const int64_t n = rows * d;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] += bias[i % d];
}

}  // namespace

void add_into(float* y, const float* x, int64_t n) {
  if (n == 0) return;
  add_into_kernel<<<grid_for(n), kThreads>>>(y, x, n);
  check_launch("add_into_kernel");
}

void add(float* out, const float* a, const float* b, int64_t n) {
  if (n == 0) return;
  add_kernel<<<grid_for(n), kThreads>>>(out, a, b, n);
  check_launch("add_kernel");
}

void copy(float* out, const float* x, int64_t n) {
  if (n == 0 || out == x) return;
  // Asynchronous on the default stream, ordered with the kernels around it.
  check(cudaMemcpyAsync(out, x, sizeof(float) * n, cudaMemcpyDeviceToDevice), "copy (D2D)");
}

void scale(float* y, float s, int64_t n) {
  if (n == 0) return;
  scale_kernel<<<grid_for(n), kThreads>>>(y, s, n);
  check_launch("scale_kernel");
}

void add_row_bias(float* out, const float* bias, int64_t rows, int64_t d) {
  if (rows == 0 || d == 0) return;
  add_row_bias_kernel<<<grid_for(rows * d), kThreads>>>(out, bias, rows, d);
  check_launch("add_row_bias_kernel");
}

}  // namespace hg::cuda
