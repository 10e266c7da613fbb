// The hourglass's shortening and upsampling kernels (layers/resample.h: ShiftRight, average
// pooling, repeat upsampling; the linear pool and upsampler are linear layers on reshaped rows,
// as on the CPU), with their launch plans (core/cuda/launch.cuh):
// compiled by nvcc in resample.cu and by g++ against the CPU emulation of tests/cuda_emulation.
//
// All six: one thread per output element in a grid-stride loop, consecutive threads on
// consecutive channels (coalesced). Sums run in the CPU layer's order with its operations (sum,
// then divide by k), so every result is bit-identical to the CPU's.
#pragma once
#include "core/cuda/launch.cuh"
#include "layers/cuda/linear_kernels.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
namespace {

// out[b, t, c] = inp[b, t - s, c] (t >= s) else 0; total = B·n·d.
__global__ void shift_right_forward_kernel(float* out, const float* inp, int64_t total, int64_t n,
                                           int64_t d, int64_t s) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / d % n;
    out[i] = t >= s ? inp[i - s * d] : 0.0f;
  }
}

// dinp[b, t, c] = dout[b, t + s, c] (t + s < n) else 0: rows shifted out get no gradient.
__global__ void shift_right_backward_kernel(float* dinp, const float* dout, int64_t total,
                                            int64_t n, int64_t d, int64_t s) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / d % n;
    dinp[i] = t + s < n ? dout[i + s * d] : 0.0f;
  }
}

// out [B·n/k, d]: row j is the mean of input rows jk .. jk+k-1 (of one sequence, as n % k == 0);
// total = B·(n/k)·d.
__global__ void pool_avg_forward_kernel(float* out, const float* inp, int64_t total, int64_t d,
                                        int k) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float* z = inp + (i / d) * k * d + i % d;
    float y = z[0];
    for (int r = 1; r < k; ++r) y += z[static_cast<int64_t>(r) * d];
    out[i] = y / static_cast<float>(k);  // sum then divide, as the CPU (1/3 is not exact)
  }
}

// dinp [B·n, d] = dout of the row's pool / k; total = B·n·d.
__global__ void pool_avg_backward_kernel(float* dinp, const float* dout, int64_t total, int64_t d,
                                         int k) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dinp[i] = dout[(i / d / k) * d + i % d] / static_cast<float>(k);
}

// out [B·m·k, d]: row t is input row t / k; total = B·m·k·d.
__global__ void upsample_repeat_forward_kernel(float* out, const float* inp, int64_t total,
                                               int64_t d, int k) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = inp[(i / d / k) * d + i % d];
}

// dinp [B·m, d]: row j sums dout rows jk .. jk+k-1 in order; total = B·m·d.
__global__ void upsample_repeat_backward_kernel(float* dinp, const float* dout, int64_t total,
                                                int64_t d, int k) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float* g = dout + (i / d) * k * d + i % d;
    float s = g[0];
    for (int r = 1; r < k; ++r) s += g[static_cast<int64_t>(r) * d];
    dinp[i] = s;
  }
}

template <class Launch>
void launch_shift_right(const Launch& launch, bool backward, float* out, const float* inp,
                        int64_t B, int64_t n, int d, int s) {
  const int64_t total = B * n * d;
  if (total == 0) return;
  if (backward)
    launch("shift_right_backward_kernel", shift_right_backward_kernel, dim3(grid_for(total)),
           dim3(kThreads), 0, out, inp, total, n, d, s);
  else
    launch("shift_right_forward_kernel", shift_right_forward_kernel, dim3(grid_for(total)),
           dim3(kThreads), 0, out, inp, total, n, d, s);
}

// Forward: out [B, n/k, d] from inp [B, n, d]; backward: dinp [B, n, d] from dout [B, n/k, d].
template <class Launch>
void launch_pool_avg(const Launch& launch, bool backward, float* out, const float* inp, int64_t B,
                     int64_t n, int d, int k) {
  const int64_t total = (backward ? B * n : B * (n / k)) * d;
  if (total == 0) return;
  if (backward)
    launch("pool_avg_backward_kernel", pool_avg_backward_kernel, dim3(grid_for(total)),
           dim3(kThreads), 0, out, inp, total, d, k);
  else
    launch("pool_avg_forward_kernel", pool_avg_forward_kernel, dim3(grid_for(total)),
           dim3(kThreads), 0, out, inp, total, d, k);
}

// Forward: out [B, m·k, d] from inp [B, m, d]; backward: dinp [B, m, d] from dout [B, m·k, d].
template <class Launch>
void launch_upsample_repeat(const Launch& launch, bool backward, float* out, const float* inp,
                            int64_t B, int64_t m, int d, int k) {
  const int64_t total = (backward ? B * m : B * m * k) * d;
  if (total == 0) return;
  if (backward)
    launch("upsample_repeat_backward_kernel", upsample_repeat_backward_kernel,
           dim3(grid_for(total)), dim3(kThreads), 0, out, inp, total, d, k);
  else
    launch("upsample_repeat_forward_kernel", upsample_repeat_forward_kernel, dim3(grid_for(total)),
           dim3(kThreads), 0, out, inp, total, d, k);
}

// The linear pool: [B, n, d] is, in memory, [B·n/k, k·d] rows (positions jk..jk+k-1
// concatenated), so pool/weight [k·d, d] is one linear layer; out [B, n/k, d] (=).
template <class Launch, class Gemm>
void run_pool_linear(const Launch& launch, const Gemm& gemm, float* out, const float* inp,
                     const float* weight, const float* bias, int64_t B, int64_t n, int d, int k) {
  const int64_t kd = static_cast<int64_t>(k) * d;
  run_linear_forward(launch, gemm, out, inp, weight, bias, B * (n / k), kd, d, d);
}
// dinp [B, n, d] (=), dweight, dbias (+=).
template <class Launch, class Gemm>
void run_pool_linear_backward(const Launch& launch, const Gemm& gemm, float* dinp, float* dweight,
                              float* dbias, const float* dout, const float* inp,
                              const float* weight, int64_t B, int64_t n, int d, int k) {
  const int64_t kd = static_cast<int64_t>(k) * d;
  run_linear_backward(launch, gemm, dinp, dweight, dbias, dout, inp, weight, B * (n / k), kd, d, d);
}
// The linear upsampler: [B·m, k·d] output rows (up/linear/weight [d, k·d]) are, in memory,
// [B, m·k, d]: row j's chunk i is output row jk + i; out (=).
template <class Launch, class Gemm>
void run_upsample_linear(const Launch& launch, const Gemm& gemm, float* out, const float* inp,
                         const float* weight, const float* bias, int64_t B, int64_t m, int d,
                         int k) {
  const int64_t kd = static_cast<int64_t>(k) * d;
  run_linear_forward(launch, gemm, out, inp, weight, bias, B * m, d, kd, kd);
}
template <class Launch, class Gemm>
void run_upsample_linear_backward(const Launch& launch, const Gemm& gemm, float* dinp,
                                  float* dweight, float* dbias, const float* dout, const float* inp,
                                  const float* weight, int64_t B, int64_t m, int d, int k) {
  const int64_t kd = static_cast<int64_t>(k) * d;
  run_linear_backward(launch, gemm, dinp, dweight, dbias, dout, inp, weight, B * m, d, kd, kd);
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
