// Long-short attention's dynamic projection on the device (layers/cpu/attention_compress.h's
// contract: chunk softmax and chunk compression), with their launch plans
// (core/cuda/launch.cuh): compiled by nvcc in attention.cu and by g++ against the CPU emulation
// of tests/cuda_emulation.
//
// Every kernel: one thread per output element in a grid-stride loop, looping over the chunk's
// l rows (or the r compressed rows, or the e channels) in the CPU layer's order with its
// expressions, so only the device's expf and FMA contraction can make the bits differ.
// Consecutive threads take consecutive columns (coalesced). Not tuned (no GPU).
#pragma once
#include "core/cuda/launch.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
namespace {

// probs [B, n, cols] = softmax over the l rows of each chunk, per column (may alias logits:
// a thread reads its column's logits before writing them). total = B·(n/l)·cols.
__global__ void chunk_softmax_forward_kernel(float* probs, const float* logits, int64_t total,
                                             int l, int cols) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t base = (i / cols) * l * cols + i % cols;  // chunk's first row, this column
    const float* z = logits + base;
    float* p = probs + base;
    float m = z[0];
    for (int r = 1; r < l; ++r) m = fmaxf(m, z[static_cast<int64_t>(r) * cols]);
    float sum = 0.0f;
    for (int r = 0; r < l; ++r) {
      const float v = expf(z[static_cast<int64_t>(r) * cols] - m);
      p[static_cast<int64_t>(r) * cols] = v;
      sum += v;
    }
    const float inv = 1.0f / sum;
    for (int r = 0; r < l; ++r) p[static_cast<int64_t>(r) * cols] *= inv;
  }
}

// dlogits (=) = p · (dp - Σ_rows p·dp), per chunk and column (may alias dprobs).
__global__ void chunk_softmax_backward_kernel(float* dlogits, const float* dprobs,
                                              const float* probs, int64_t total, int l, int cols) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t base = (i / cols) * l * cols + i % cols;
    float pd = 0.0f;
    for (int r = 0; r < l; ++r) {
      const int64_t at = base + static_cast<int64_t>(r) * cols;
      pd += probs[at] * dprobs[at];
    }
    for (int r = 0; r < l; ++r) {
      const int64_t at = base + static_cast<int64_t>(r) * cols;
      dlogits[at] = probs[at] * (dprobs[at] - pd);
    }
  }
}

// comp [B, n/l, r, H·e] (=): comp[bc, ρ, h·e + k] = Σ_i probs[bc·l + i, h·r + ρ] · x[bc·l + i,
// h·e + k]. total = B·(n/l)·r·H·e.
__global__ void chunk_compress_forward_kernel(float* comp, const float* x, const float* probs,
                                              int64_t total, int l, int H, int r, int e) {
  const int64_t width = static_cast<int64_t>(H) * e, pcols = static_cast<int64_t>(H) * r;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t col = i % width, rho = i / width % r, bc = i / width / r;
    const int64_t h = col / e;
    const float* xc = x + bc * l * width + col;
    const float* pc = probs + bc * l * pcols + h * r + rho;
    float o = 0.0f;
    for (int row = 0; row < l; ++row) o += pc[row * pcols] * xc[row * width];
    comp[i] = o;
  }
}

// dx [B, n, H·e] (+=): dx[row, h·e + k] += Σ_ρ probs[row, h·r + ρ] · dcomp[chunk, ρ, h·e + k].
// total = B·n·H·e.
__global__ void chunk_compress_backward_input_kernel(float* dx, const float* dcomp,
                                                     const float* probs, int64_t total, int l,
                                                     int H, int r, int e) {
  const int64_t width = static_cast<int64_t>(H) * e, pcols = static_cast<int64_t>(H) * r;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t col = i % width, row = i / width, h = col / e;
    const float* g = dcomp + (row / l) * r * width + col;
    const float* p = probs + row * pcols + h * r;
    float s = dx[i];
    for (int rho = 0; rho < r; ++rho) s += p[rho] * g[static_cast<int64_t>(rho) * width];
    dx[i] = s;
  }
}

// dprobs [B, n, H·r] (+=): dprobs[row, h·r + ρ] += Σ_k dcomp[chunk, ρ, h·e + k] · x[row, h·e + k].
// total = B·n·H·r.
__global__ void chunk_compress_backward_probs_kernel(float* dprobs, const float* dcomp,
                                                     const float* x, int64_t total, int l, int H,
                                                     int r, int e) {
  const int64_t width = static_cast<int64_t>(H) * e, pcols = static_cast<int64_t>(H) * r;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / pcols, h = i % pcols / r, rho = i % r;
    const float* g = dcomp + ((row / l) * r + rho) * width + h * e;
    const float* xi = x + row * width + h * e;
    float dot = 0.0f;
    for (int k = 0; k < e; ++k) dot += g[k] * xi[k];
    dprobs[i] += dot;
  }
}

template <class Launch>
void launch_chunk_softmax_forward(const Launch& launch, float* probs, const float* logits,
                                  int64_t B, int64_t n, int l, int cols) {
  const int64_t total = B * (n / l) * cols;
  if (total == 0) return;
  launch("chunk_softmax_forward_kernel", chunk_softmax_forward_kernel, dim3(grid_for(total)),
         dim3(kThreads), 0, probs, logits, total, l, cols);
}

template <class Launch>
void launch_chunk_softmax_backward(const Launch& launch, float* dlogits, const float* dprobs,
                                   const float* probs, int64_t B, int64_t n, int l, int cols) {
  const int64_t total = B * (n / l) * cols;
  if (total == 0) return;
  launch("chunk_softmax_backward_kernel", chunk_softmax_backward_kernel, dim3(grid_for(total)),
         dim3(kThreads), 0, dlogits, dprobs, probs, total, l, cols);
}

template <class Launch>
void launch_chunk_compress_forward(const Launch& launch, float* comp, const float* x,
                                   const float* probs, int64_t B, int64_t n, int l, int H, int r,
                                   int e) {
  const int64_t total = B * (n / l) * r * H * e;
  if (total == 0) return;
  launch("chunk_compress_forward_kernel", chunk_compress_forward_kernel, dim3(grid_for(total)),
         dim3(kThreads), 0, comp, x, probs, total, l, H, r, e);
}

// dx (+=) and dprobs (+=), as the CPU's chunk_compress_backward.
template <class Launch>
void launch_chunk_compress_backward(const Launch& launch, float* dx, float* dprobs,
                                    const float* dcomp, const float* x, const float* probs,
                                    int64_t B, int64_t n, int l, int H, int r, int e) {
  const int64_t inputs = B * n * H * e, prob_cols = B * n * H * r;
  if (inputs == 0) return;
  launch("chunk_compress_backward_input_kernel", chunk_compress_backward_input_kernel,
         dim3(grid_for(inputs)), dim3(kThreads), 0, dx, dcomp, probs, inputs, l, H, r, e);
  launch("chunk_compress_backward_probs_kernel", chunk_compress_backward_probs_kernel,
         dim3(grid_for(prob_cols)), dim3(kThreads), 0, dprobs, dcomp, x, prob_cols, l, H, r, e);
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
