// Element-wise kernels on device buffers (core/elementwise.h's contract): residual adds,
// scaling and the row-bias broadcast,
// with their launch plans (core/cuda/launch.cuh): compiled by nvcc in elementwise.cu and by g++
// against the CPU emulation of tests/cuda_emulation.
#pragma once
#include "core/cuda/launch.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
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

template <class Launch>
void launch_add_into(const Launch& launch, float* y, const float* x, int64_t n) {
  if (n > 0)
    launch("add_into_kernel", add_into_kernel, dim3(grid_for(n)), dim3(kThreads), 0, y, x, n);
}

template <class Launch>
void launch_add(const Launch& launch, float* out, const float* a, const float* b, int64_t n) {
  if (n > 0) launch("add_kernel", add_kernel, dim3(grid_for(n)), dim3(kThreads), 0, out, a, b, n);
}

template <class Launch>
void launch_scale(const Launch& launch, float* y, float s, int64_t n) {
  if (n > 0) launch("scale_kernel", scale_kernel, dim3(grid_for(n)), dim3(kThreads), 0, y, s, n);
}

template <class Launch>
void launch_add_row_bias(const Launch& launch, float* out, const float* bias, int64_t rows,
                         int64_t d) {
  if (rows == 0 || d == 0) return;
  launch("add_row_bias_kernel", add_row_bias_kernel, dim3(grid_for(rows * d)), dim3(kThreads), 0,
         out, bias, rows, d);
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
