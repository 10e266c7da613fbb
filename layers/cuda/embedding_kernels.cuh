// Token embedding kernels (layers/embedding.h): a row gather, and its scatter-add backward,
// with their launch plans (core/cuda/launch.cuh): compiled by nvcc in embedding.cu and by g++
// against the CPU emulation of tests/cuda_emulation.
#pragma once
#include "core/cuda/launch.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
namespace {

// One thread per output element (grid-stride): consecutive threads copy consecutive columns of a
// row, so both the gather and the store are coalesced.
__global__ void embedding_forward_kernel(float* out, const int32_t* tokens, const float* weight,
                                         int64_t rows, int d) {
  const int64_t n = rows * d;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / d, c = i % d;
    out[i] = weight[static_cast<int64_t>(tokens[r]) * d + c];
  }
}

// Backward: deterministic and sort-free, NOT atomicAdd. With atomics the order in which repeated
// tokens add into a row of dweight depends on scheduling, so float sums (and the whole training
// run after them) would change from run to run; the project promises bit-identical results (same
// losses across layouts, bit-exact resume), so each dweight element has exactly one owner thread
// that adds its rows in row order -- the CPU layer's order, hence the same bits as the CPU.
//
// Owner of dweight[v, c]: thread (column c, bucket v mod kBuckets). Grid (ceil(d/256),
// kBuckets), 256 columns per block: every thread walks all rows and adds the ones whose token
// falls in its bucket. The bucket test is the same for a whole warp (one blockIdx.y), so there is
// no divergence and the token load is a broadcast; the matching dout rows are read coalesced.
// Parallelism d · kBuckets (24k threads for d = 768) instead of d for one column per thread, at
// the price of every thread scanning all `rows` tokens (cheap next to the head's gemm). Skewed
// token frequencies (bytes: spaces, 'e') load buckets unevenly. Not measured (no GPU).
constexpr int kBuckets = 32;

__global__ void embedding_backward_kernel(float* dweight, const float* dout, const int32_t* tokens,
                                          int64_t rows, int d) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int32_t bucket = static_cast<int32_t>(blockIdx.y);
  if (c >= d) return;
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t v = tokens[r];
    if (v % kBuckets != bucket) continue;  // tokens are in [0, V): v % kBuckets >= 0
    dweight[static_cast<int64_t>(v) * d + c] += dout[r * d + c];
  }
}

template <class Launch>
void launch_embedding_forward(const Launch& launch, float* out, const int32_t* tokens,
                              const float* weight, int64_t rows, int d) {
  if (rows == 0) return;
  launch("embedding_forward_kernel", embedding_forward_kernel, dim3(grid_for(rows * d)),
         dim3(kThreads), 0, out, tokens, weight, rows, d);
}

template <class Launch>
void launch_embedding_backward(const Launch& launch, float* dweight, const float* dout,
                               const int32_t* tokens, int64_t rows, int d) {
  if (rows == 0) return;
  const dim3 grid(static_cast<unsigned>((d + kThreads - 1) / kThreads), kBuckets);
  launch("embedding_backward_kernel", embedding_backward_kernel, grid, dim3(kThreads), 0, dweight,
         dout, tokens, rows, d);
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
