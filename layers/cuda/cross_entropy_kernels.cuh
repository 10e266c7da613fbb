// Softmax cross-entropy kernels (layers/cross_entropy.h): max-shifted, the exponential sum in
// double per row as on the CPU, so V in the tens of thousands loses nothing to rounding;
// with their launch plans (core/cuda/launch.cuh): compiled by nvcc in cross_entropy.cu and by g++
// against the CPU emulation of tests/cuda_emulation.
#pragma once
#include "core/cuda/launch.cuh"
#include "layers/cuda/reduce.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
namespace {

// One 256-thread block per row: a row is V floats (256 for bytes, up to ~10^5), read three
// times (max, sum, write) from L2 after the first pass; block_reduce combines the threads in a
// fixed order. Double accumulation costs little on sm_80/sm_90 (full-rate FP64 on A100/H100).
struct RowStats {
  float max;
  double sum;  // Σ exp(x - max)
};

__device__ RowStats row_stats(const float* x, int V) {
  float m = -INFINITY;
  for (int i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, x[i]);
  m = block_reduce(m, MaxOp{});
  double s = 0.0;
  for (int i = threadIdx.x; i < V; i += blockDim.x) s += static_cast<double>(expf(x[i] - m));
  s = block_reduce(s, SumOp{});
  return {m, s};
}

__global__ void cross_entropy_forward_kernel(float* losses, const float* logits,
                                             const int32_t* targets, int V) {
  const int64_t r = blockIdx.x;
  const float* x = logits + r * V;
  const RowStats st = row_stats(x, V);
  if (threadIdx.x == 0) {
    const int32_t t = targets[r];
    // loss = log Σ exp(x) - x[target] = m + log Σ exp(x - m) - x[target]
    losses[r] = (t >= 0 && t < V)
                    ? static_cast<float>(log(st.sum) + (static_cast<double>(st.max) - x[t]))
                    : NAN;  // out-of-range target: the CPU layer throws; see ops.h
  }
}

// dlogits may alias logits: every read of x (max, sum, and x[i] before g[i] in the last loop)
// happens before the same thread writes g[i], and block_reduce's barriers order the passes.
__global__ void cross_entropy_backward_kernel(float* dlogits, const float* logits,
                                              const int32_t* targets, float scale, int V) {
  const int64_t r = blockIdx.x;
  const float* x = logits + r * V;
  float* g = dlogits + r * V;
  const RowStats st = row_stats(x, V);
  const int32_t t = targets[r];
  const bool valid = t >= 0 && t < V;
  const float k =
      static_cast<float>(scale / st.sum);  // as the CPU: scale / Σ in double, then float
  for (int i = threadIdx.x; i < V; i += blockDim.x) g[i] = valid ? expf(x[i] - st.max) * k : NAN;
  __syncthreads();  // g[t] was written by another thread
  if (threadIdx.x == 0 && valid) g[t] -= scale;
}

template <class Launch>
void launch_cross_entropy_forward(const Launch& launch, float* losses, const float* logits,
                                  const int32_t* targets, int64_t rows, int V) {
  if (rows == 0) return;
  launch("cross_entropy_forward_kernel", cross_entropy_forward_kernel,
         dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, losses, logits, targets, V);
}

template <class Launch>
void launch_cross_entropy_backward(const Launch& launch, float* dlogits, const float* logits,
                                   const int32_t* targets, float scale, int64_t rows, int V) {
  if (rows == 0) return;
  launch("cross_entropy_backward_kernel", cross_entropy_backward_kernel,
         dim3(static_cast<unsigned>(rows)), dim3(kThreads), 0, dlogits, logits, targets, scale, V);
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
