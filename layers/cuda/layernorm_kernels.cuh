// LayerNorm kernels (layers/layernorm.h's contract, grouped form included: row r holds `groups`
// independent C-wide vectors; vector (r, g) starts at (r·groups + g)·C), with their launch plans
// (core/cuda/launch.cuh): compiled by nvcc in layernorm.cu and by g++ against the CPU emulation
// of tests/cuda_emulation.
#pragma once
#include "core/cuda/launch.cuh"
#include "layers/cuda/reduce.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
namespace {

constexpr float kLayerNormEpsilon = 1e-5f;  // hg::kLayerNormEps (layers/layernorm.h)

// One warp per C-wide vector, 8 warps per 256-thread block: C is d (hundreds) or a head width
// (tens), a few values per lane, so a warp is enough and needs no shared memory.
constexpr int kLayerNormVectorsPerBlock = kThreads / kWarp;

__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp,
                                         const float* gain, const float* bias, int64_t vectors,
                                         int groups, int C) {
  const int64_t v =
      static_cast<int64_t>(blockIdx.x) * kLayerNormVectorsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (v >= vectors) return;  // whole warps leave together: the shuffles below stay full-mask
  const int64_t g = v % groups;
  const float* x = inp + v * C;  // [C]
  float* y = out + v * C;
  const float* w = gain + g * C;
  const float* b = bias + g * C;
  // Two passes, as on the CPU: E[x²] - mean² cancels badly when |mean| >> std.
  float s = 0.0f;
  for (int c = lane; c < C; c += kWarp) s += x[c];
  const float m = warp_reduce(s, SumOp{}) / static_cast<float>(C);
  float q = 0.0f;
  for (int c = lane; c < C; c += kWarp) q += (x[c] - m) * (x[c] - m);
  const float var = warp_reduce(q, SumOp{}) / static_cast<float>(C);  // biased, as the spec says
  const float r =
      1.0f / sqrtf(var + kLayerNormEpsilon);  // IEEE sqrt and division, not rsqrtf (2 ulp)
  for (int c = lane; c < C; c += kWarp) y[c] = (x[c] - m) * r * w[c] + b[c];
  if (lane == 0) {
    mean[v] = m;
    rstd[v] = r;
  }
}

// dinp = rstd · (dnorm - mean(dnorm) - norm · mean(dnorm · norm)), dnorm = dout · gain; one warp
// per vector as in the forward.
__global__ void layernorm_backward_input_kernel(float* dinp, const float* dout, const float* inp,
                                                const float* gain, const float* mean,
                                                const float* rstd, int64_t vectors, int groups,
                                                int C) {
  const int64_t v =
      static_cast<int64_t>(blockIdx.x) * kLayerNormVectorsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (v >= vectors) return;
  const float* x = inp + v * C;
  const float* dy = dout + v * C;
  float* dx = dinp + v * C;
  const float* w = gain + (v % groups) * C;
  const float m = mean[v], r = rstd[v];
  float sum_d = 0.0f, sum_dn = 0.0f;
  for (int c = lane; c < C; c += kWarp) {
    const float dnorm = dy[c] * w[c];
    sum_d += dnorm;
    sum_dn += dnorm * ((x[c] - m) * r);
  }
  const float mean_d = warp_reduce(sum_d, SumOp{}) / static_cast<float>(C);
  const float mean_dn = warp_reduce(sum_dn, SumOp{}) / static_cast<float>(C);
  for (int c = lane; c < C; c += kWarp)
    dx[c] = (dy[c] * w[c] - mean_d - (x[c] - m) * r * mean_dn) * r;
}

// dgain[j] += Σ_rows dout · norm, dbias[j] += Σ_rows dout, j < groups·C: the column-sum shape
// of reduce.cuh (deterministic, no atomics).
__global__ void layernorm_backward_params_kernel(float* dgain, float* dbias, const float* dout,
                                                 const float* inp, const float* mean,
                                                 const float* rstd, int64_t rows, int groups,
                                                 int C) {
  const int64_t width = static_cast<int64_t>(groups) * C;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kWarp + threadIdx.x;
  float partial[2] = {0.0f, 0.0f};  // Σ dout·norm, Σ dout
  if (col < width) {
    const int64_t g = col / C;
    for (int64_t r = threadIdx.y; r < rows; r += kRowLanes) {
      const int64_t v = r * groups + g;
      const float dy = dout[r * width + col];
      partial[0] += dy * ((inp[r * width + col] - mean[v]) * rstd[v]);
      partial[1] += dy;
    }
  }
  float* const dst[2] = {dgain, dbias};
  add_column_totals<2>(dst, partial, col, width);
}

template <class Launch>
void launch_layernorm_forward(const Launch& launch, float* out, float* mean, float* rstd,
                              const float* inp, const float* gain, const float* bias, int64_t rows,
                              int groups, int C) {
  const int64_t vectors = rows * groups;
  if (vectors == 0) return;
  const auto blocks =
      static_cast<unsigned>((vectors + kLayerNormVectorsPerBlock - 1) / kLayerNormVectorsPerBlock);
  launch("layernorm_forward_kernel", layernorm_forward_kernel, dim3(blocks), dim3(kThreads), 0, out,
         mean, rstd, inp, gain, bias, vectors, groups, C);
}

template <class Launch>
void launch_layernorm_backward(const Launch& launch, float* dinp, float* dgain, float* dbias,
                               const float* dout, const float* inp, const float* gain,
                               const float* mean, const float* rstd, int64_t rows, int groups,
                               int C) {
  const int64_t vectors = rows * groups;
  if (vectors == 0) return;
  const auto blocks =
      static_cast<unsigned>((vectors + kLayerNormVectorsPerBlock - 1) / kLayerNormVectorsPerBlock);
  launch("layernorm_backward_input_kernel", layernorm_backward_input_kernel, dim3(blocks),
         dim3(kThreads), 0, dinp, dout, inp, gain, mean, rstd, vectors, groups, C);
  const int64_t width = static_cast<int64_t>(groups) * C;
  const auto col_blocks = static_cast<unsigned>((width + kWarp - 1) / kWarp);
  launch("layernorm_backward_params_kernel", layernorm_backward_params_kernel, dim3(col_blocks),
         dim3(kWarp, kRowLanes), 0, dgain, dbias, dout, inp, mean, rstd, rows, groups, C);
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
