// Primer's causal depthwise convolution kernels (layers/dconv.h): 3 taps per channel, within
// each sequence, Z[<0] = 0, the taps' rows `ldt` floats apart (columns [0, C) used),
// with their launch plans (core/cuda/launch.cuh): compiled by nvcc in dconv.cu and by g++ against
// the CPU emulation of tests/cuda_emulation.
#pragma once
#include "core/cuda/launch.cuh"
#include "layers/cuda/reduce.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
namespace {

// One thread per output element (grid-stride), consecutive threads on consecutive channels: the
// three input rows t, t-1, t-2 are read coalesced and reused from L1/L2 by neighbouring rows.
__global__ void dconv_forward_kernel(float* out, const float* inp, const float* taps, int64_t B,
                                     int64_t n, int C, int64_t ldt) {
  const int64_t total = B * n * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % C;
    const int64_t t = (i / C) % n;  // position inside its sequence
    const float a0 = taps[c], a1 = taps[ldt + c], a2 = taps[2 * ldt + c];
    // Same expression and order as the CPU layer: (a0·z0 + a1·z1) + a2·z2.
    if (t >= 2)
      out[i] = a0 * inp[i] + a1 * inp[i - C] + a2 * inp[i - 2 * C];
    else if (t == 1)
      out[i] = a0 * inp[i] + a1 * inp[i - C];
    else
      out[i] = a0 * inp[i];
  }
}

// dZ[t] = a0·dY[t] + a1·dY[t+1] + a2·dY[t+2], terms past the sequence end absent.
__global__ void dconv_backward_input_kernel(float* dinp, const float* dout, const float* taps,
                                            int64_t B, int64_t n, int C, int64_t ldt) {
  const int64_t total = B * n * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % C;
    const int64_t t = (i / C) % n;
    const float a0 = taps[c], a1 = taps[ldt + c], a2 = taps[2 * ldt + c];
    if (t + 2 < n)
      dinp[i] = a0 * dout[i] + a1 * dout[i + C] + a2 * dout[i + 2 * C];
    else if (t + 1 < n)
      dinp[i] = a0 * dout[i] + a1 * dout[i + C];
    else
      dinp[i] = a0 * dout[i];
  }
}

// dtaps[a, c] (row stride ldt) += Σ_rows dY[t, c] · Z[t-a, c] (Z[<0] = 0 within each sequence):
// the column-sum shape of reduce.cuh over the B·n rows, three sums per channel (deterministic, no
// atomics).
__global__ void dconv_backward_taps_kernel(float* dtaps, const float* dout, const float* inp,
                                           int64_t B, int64_t n, int C, int64_t ldt) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kWarp + threadIdx.x;
  float partial[3] = {0.0f, 0.0f, 0.0f};
  if (c < C)
    for (int64_t bt = threadIdx.y; bt < B * n; bt += kRowLanes) {
      const int64_t t = bt % n;
      const int64_t i = bt * C + c;
      const float g = dout[i];
      partial[0] += g * inp[i];
      if (t >= 1) partial[1] += g * inp[i - C];
      if (t >= 2) partial[2] += g * inp[i - 2 * C];
    }
  float* const dst[3] = {dtaps, dtaps + ldt, dtaps + 2 * ldt};
  add_column_totals<3>(dst, partial, c, C);
}

template <class Launch>
void launch_dconv_forward(const Launch& launch, float* out, const float* inp, const float* taps,
                          int64_t B, int64_t n, int C, int64_t ldt) {
  if (B * n * C == 0) return;
  launch("dconv_forward_kernel", dconv_forward_kernel, dim3(grid_for(B * n * C)), dim3(kThreads), 0,
         out, inp, taps, B, n, C, ldt);
}

template <class Launch>
void launch_dconv_backward(const Launch& launch, float* dinp, float* dtaps, const float* dout,
                           const float* inp, const float* taps, int64_t B, int64_t n, int C,
                           int64_t ldt) {
  if (B * n * C == 0) return;
  launch("dconv_backward_input_kernel", dconv_backward_input_kernel, dim3(grid_for(B * n * C)),
         dim3(kThreads), 0, dinp, dout, taps, B, n, C, ldt);
  const auto col_blocks = static_cast<unsigned>((C + kWarp - 1) / kWarp);
  launch("dconv_backward_taps_kernel", dconv_backward_taps_kernel, dim3(col_blocks),
         dim3(kWarp, kRowLanes), 0, dtaps, dout, inp, B, n, C, ldt);
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
