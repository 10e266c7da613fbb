// Primer's causal depthwise convolution on the device (layers/dconv.h): 3 taps per channel,
// within each sequence, Z[<0] = 0. Compiled, not run (no GPU on this project's machines).
#include <cuda_runtime.h>

#include "core/cuda/check.h"
#include "layers/cuda/ops.h"
#include "layers/cuda/reduce.cuh"

namespace hg::cuda {

namespace {

// One thread per output element (grid-stride), consecutive threads on consecutive channels: the
// three input rows t, t-1, t-2 are read coalesced and reused from L1/L2 by neighbouring rows.
__global__ void dconv_forward_kernel(float* out, const float* inp, const float* taps, int64_t B,
                                     int64_t n, int C) {
  const int64_t total = B * n * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % C;
    const int64_t t = (i / C) % n;  // position inside its sequence
    const float a0 = taps[c], a1 = taps[C + c], a2 = taps[2 * C + c];
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
                                            int64_t B, int64_t n, int C) {
  const int64_t total = B * n * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % C;
    const int64_t t = (i / C) % n;
    const float a0 = taps[c], a1 = taps[C + c], a2 = taps[2 * C + c];
    if (t + 2 < n)
      dinp[i] = a0 * dout[i] + a1 * dout[i + C] + a2 * dout[i + 2 * C];
    else if (t + 1 < n)
      dinp[i] = a0 * dout[i] + a1 * dout[i + C];
    else
      dinp[i] = a0 * dout[i];
  }
}

// dtaps[a, c] += Σ_rows dY[t, c] · Z[t-a, c] (Z[<0] = 0 within each sequence): the column-sum
// shape of reduce.cuh over the B·n rows, three sums per channel (deterministic, no atomics).
__global__ void dconv_backward_taps_kernel(float* dtaps, const float* dout, const float* inp,
                                           int64_t B, int64_t n, int C) {
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
  float* const dst[3] = {dtaps, dtaps + C, dtaps + 2 * C};
  add_column_totals<3>(dst, partial, c, C);
}

}  // namespace

void dconv_forward(float* out, const float* inp, const float* taps, int64_t B, int64_t n, int C) {
  if (B * n * C == 0) return;
  dconv_forward_kernel<<<grid_for(B * n * C), kThreads>>>(out, inp, taps, B, n, C);
  check_launch("dconv_forward_kernel");
}

void dconv_backward(float* dinp, float* dtaps, const float* dout, const float* inp,
                    const float* taps, int64_t B, int64_t n, int C) {
  if (B * n * C == 0) return;
  dconv_backward_input_kernel<<<grid_for(B * n * C), kThreads>>>(dinp, dout, taps, B, n, C);
  check_launch("dconv_backward_input_kernel");
  const auto col_blocks = static_cast<unsigned>((C + kWarp - 1) / kWarp);
  dconv_backward_taps_kernel<<<col_blocks, dim3(kWarp, kRowLanes)>>>(dtaps, dout, inp, B, n, C);
  check_launch("dconv_backward_taps_kernel");
}

}  // namespace hg::cuda
