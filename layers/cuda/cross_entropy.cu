// Softmax cross-entropy on the device (layers/cross_entropy.h): max-shifted, the exponential sum
// in double per row as on the CPU, so V in the tens of thousands loses nothing to rounding.
// Compiled, not run (no GPU on this project's machines).
#include <cuda_runtime.h>

#include <cmath>

#include "core/cuda/check.h"
#include "layers/cuda/ops.h"
#include "layers/cuda/reduce.cuh"

namespace hg::cuda {

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

}  // namespace

void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t rows,
                           int V) {
  if (rows == 0) return;
  cross_entropy_forward_kernel<<<static_cast<unsigned>(rows), kThreads>>>(losses, logits, targets,
                                                                          V);
  check_launch("cross_entropy_forward_kernel");
}

void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            float scale, int64_t rows, int V) {
  if (rows == 0) return;
  cross_entropy_backward_kernel<<<static_cast<unsigned>(rows), kThreads>>>(dlogits, logits, targets,
                                                                           scale, V);
  check_launch("cross_entropy_backward_kernel");
}

}  // namespace hg::cuda
