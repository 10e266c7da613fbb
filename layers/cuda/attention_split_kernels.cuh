// The kernels of the split attention (attention_split.h): the merge of two key segments' softmaxes
// through their log-sum-exps, and the bfloat16 -> float32 widening of a fused attention's outputs
// (cudnn_attention.cpp). With their launch plans (core/cuda/launch.cuh): compiled by nvcc in
// attention.cu and by g++ against the CPU emulation of tests/cuda_emulation.
#pragma once
#include <cstring>

#include "core/cuda/launch.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
namespace {

// out [B, nq, H·e] (=) and lse [B·H, nq] (=) of the joint softmax from each segment's own:
//   lse = log(exp(lse_a) + exp(lse_b)),  out = exp(lse_a - lse)·out_a + exp(lse_b - lse)·out_b.
// A segment that saw no key has lse -inf and weight 0 (lse_a, the window's, is always finite).
// One thread per output element; the element of head channel 0 writes the row's lse.
__global__ void attention_merge_kernel(float* out, float* lse, const float* out_a,
                                       const float* lse_a, const float* out_b, const float* lse_b,
                                       int64_t B, int64_t nq, int H, int e) {
  const int64_t HE = static_cast<int64_t>(H) * e, n = B * nq * HE;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / HE, b = row / nq, t = row - b * nq;
    const int h = static_cast<int>((i - row * HE) / e);
    const int64_t s = (b * H + h) * nq + t;
    const float la = lse_a[s], lb = lse_b[s];
    const float m = fmaxf(la, lb);
    const float wa = expf(la - m), wb = expf(lb - m);  // wb = 0 when lb = -inf
    const float sum = wa + wb;
    out[i] = (wa / sum) * out_a[i] + (wb / sum) * out_b[i];
    if (i - row * HE == static_cast<int64_t>(h) * e) lse[s] = m + logf(sum);
  }
}

// y (=, or += when accumulate) the float32 value of n bfloat16 bit patterns: exact.
__global__ void widen_bf16_kernel(float* y, const uint16_t* x, int64_t n, bool accumulate) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint32_t bits = static_cast<uint32_t>(x[i]) << 16;
    float v;
    memcpy(&v, &bits, sizeof v);
    y[i] = accumulate ? y[i] + v : v;
  }
}

template <class Launch>
void launch_attention_merge(const Launch& launch, float* out, float* lse, const float* out_a,
                            const float* lse_a, const float* out_b, const float* lse_b, int64_t B,
                            int64_t nq, int H, int e) {
  const int64_t n = B * nq * H * e;
  if (n > 0)
    launch("attention_merge_kernel", attention_merge_kernel, dim3(grid_for(n)), dim3(kThreads), 0,
           out, lse, out_a, lse_a, out_b, lse_b, B, nq, H, e);
}

template <class Launch>
void launch_widen_bf16(const Launch& launch, float* y, const uint16_t* x, int64_t n,
                       bool accumulate) {
  if (n > 0)
    launch("widen_bf16_kernel", widen_bf16_kernel, dim3(grid_for(n)), dim3(kThreads), 0, y, x, n,
           accumulate);
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
