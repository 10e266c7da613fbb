// FFN activation kernels (layers/activation.h): relu2 = relu(z)², gelu = tanh form,
// with their launch plans (core/cuda/launch.cuh): compiled by nvcc in activation.cu and by g++
// against the CPU emulation of tests/cuda_emulation.
#pragma once
#include "core/cuda/launch.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
namespace {

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2/π)
constexpr float kGeluA = 0.044715f;

// ½(1 + tanh u) written as σ(2u), as the CPU layer does (no cancellation). expf, not __expf: the
// fast intrinsic loses accuracy for large |u|; expf is within 2 ulp like the CPU's exp_approx.
__device__ float gelu_sigmoid(float z) {
  const float u = kGeluC * (z + kGeluA * z * z * z);
  return 1.0f / (1.0f + expf(-2.0f * u));
}

// One thread per element in a grid-stride loop (check.h): consecutive threads touch consecutive
// floats, so every load and store is coalesced.
__global__ void relu2_forward_kernel(float* out, const float* inp, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float r = inp[i] > 0.0f ? inp[i] : 0.0f;
    out[i] = r * r;
  }
}

__global__ void gelu_forward_kernel(float* out, const float* inp, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = inp[i] * gelu_sigmoid(inp[i]);
}

// d/dz relu(z)² = 2·relu(z). Each element is read from dout before dinp is written, so the two
// may alias.
__global__ void relu2_backward_kernel(float* dinp, const float* dout, const float* inp, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float r = inp[i] > 0.0f ? inp[i] : 0.0f;
    dinp[i] = 2.0f * r * dout[i];
  }
}

// d/dz z·σ(2u) = σ + z·2σ(1 - σ)·u',  u' = c(1 + 3a z²)
__global__ void gelu_backward_kernel(float* dinp, const float* dout, const float* inp, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float z = inp[i];
    const float sg = gelu_sigmoid(z);
    const float du = kGeluC * (1.0f + 3.0f * kGeluA * z * z);
    dinp[i] = dout[i] * (sg + 2.0f * z * sg * (1.0f - sg) * du);
  }
}

template <class Launch>
void launch_activation_forward(const Launch& launch, float* out, const float* inp, int64_t n,
                               bool relu2) {
  if (n == 0) return;
  if (relu2)
    launch("relu2_forward_kernel", relu2_forward_kernel, dim3(grid_for(n)), dim3(kThreads), 0, out,
           inp, n);
  else
    launch("gelu_forward_kernel", gelu_forward_kernel, dim3(grid_for(n)), dim3(kThreads), 0, out,
           inp, n);
}

template <class Launch>
void launch_activation_backward(const Launch& launch, float* dinp, const float* dout,
                                const float* inp, int64_t n, bool relu2) {
  if (n == 0) return;
  if (relu2)
    launch("relu2_backward_kernel", relu2_backward_kernel, dim3(grid_for(n)), dim3(kThreads), 0,
           dinp, dout, inp, n);
  else
    launch("gelu_backward_kernel", gelu_backward_kernel, dim3(grid_for(n)), dim3(kThreads), 0, dinp,
           dout, inp, n);
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
