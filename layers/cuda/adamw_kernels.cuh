// The AdamW kernel, PyTorch semantics, exactly as layers/cpu/adamw.cpp computes it for one
// tensor, with their launch plans (core/cuda/launch.cuh): compiled by nvcc in adamw.cu and by g++
// against the CPU emulation of tests/cuda_emulation.
#pragma once
#include "core/adamw_scalars.h"
#include "core/cuda/launch.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
namespace {

// One thread per element (grid-stride, coalesced): four streams in, three out, no reuse; the
// step is memory-bound. The statements are the CPU loop's, in its order: decoupled decay first,
// then torch's lerp_ form of the first moment (m += (1-β1)(g - m), not β1·m + (1-β1)·g: the two
// round differently), then the second moment, then the update with sqrt(v)/sqrt(bias2) + eps.
// sqrtf and '/' are IEEE-rounded under nvcc's defaults (-prec-sqrt, -prec-div), as on the CPU.
__global__ void adamw_kernel(float* theta, const float* g, float* m, float* v, int64_t n, float b1,
                             float b2, float step_size, float sqrt_bias2, float eps, float decay) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float th = theta[i] * decay;
    const float gi = g[i];
    const float mi = m[i] + (1.0f - b1) * (gi - m[i]);
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    th -= step_size * mi / (sqrtf(vi) / sqrt_bias2 + eps);
    theta[i] = th;
    m[i] = mi;
    v[i] = vi;
  }
}

template <class Launch>
void launch_adamw_step(const Launch& launch, float* value, const float* grad, float* exp_avg,
                       float* exp_avg_sq, int64_t n, const AdamWScalars& k, bool decay) {
  if (n == 0) return;
  launch("adamw_kernel", adamw_kernel, dim3(grid_for(n)), dim3(kThreads), 0, value, grad, exp_avg,
         exp_avg_sq, n, k.beta1, k.beta2, k.step_size, k.sqrt_bias2, k.eps,
         decay ? k.decay_factor : 1.0f);
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
