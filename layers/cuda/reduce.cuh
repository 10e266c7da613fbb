// Device-side reductions shared by the op kernels. Every order of summation here is fixed by the
// code (never by scheduling or atomics), so a kernel's result is the same bits on every run.
// Compiled, not run (no GPU on this project's machines).
#pragma once
#include <cstdint>

#include "core/cuda/launch.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Butterfly over the 32 lanes: every lane ends with the same value (a + b == b + a exactly, so
// partners compute identical partial results at each level).
template <class T, class Op>
__device__ T warp_reduce(T v, Op op) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v = op(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Reduction over a whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// result. Warp results are combined by every thread in warp order. Must be reached by all threads
// of the block; may be called repeatedly (the trailing barrier protects the shared slots).
template <class T, class Op>
__device__ T block_reduce(T v, Op op) {
  __shared__ T warp_results[kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  v = warp_reduce(v, op);
  if (lane == 0) warp_results[warp] = v;
  __syncthreads();
  T r = warp_results[0];
  for (int w = 1; w < static_cast<int>(blockDim.x) / kWarp; ++w) r = op(r, warp_results[w]);
  __syncthreads();
  return r;
}

// Column sums over rows (parameter gradients: LayerNorm gain/bias, DConv taps). Launch shape:
// blockDim (32, kRowLanes), one block per 32 consecutive columns. Thread (x, y) sums rows
// y, y + kRowLanes, ... of column blockIdx.x·32 + x: each warp reads one row's 32 columns (128
// contiguous bytes, coalesced) and no scratch buffer or atomic is needed. The cost: only
// ceil(cols/32) blocks (24 for d = 768), which fill part of a large GPU; a two-pass reduction
// over row chunks would fill it, at the price of a scratch buffer. Not measured (no GPU).
// 32×32 = 1024 threads per block leaves at most 64 registers per thread; ptxas reports 40-48 for
// the column-sum kernels (sm_80, sm_90), so the launches fit.
constexpr int kRowLanes = 32;

// Adds the block's K column totals into dst[k][col]: the kRowLanes partials of each column are
// summed in lane order. Every thread of the block must call it (it has a barrier), including
// those whose column is past the end.
template <int K>
__device__ void add_column_totals(float* const (&dst)[K], const float (&partial)[K], int64_t col,
                                  int64_t cols) {
  __shared__ float lanes[K][kRowLanes][kWarp];
  for (int k = 0; k < K; ++k) lanes[k][threadIdx.y][threadIdx.x] = partial[k];
  __syncthreads();
  if (threadIdx.y == 0 && col < cols)
    for (int k = 0; k < K; ++k) {
      float total = 0.0f;
      for (int l = 0; l < kRowLanes; ++l) total += lanes[k][l][threadIdx.x];
      dst[k][col] += total;
    }
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
