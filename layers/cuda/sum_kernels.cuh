// Whole-buffer sums in double (Backend::sum, sum_squares): the loss line and the gradient norm,
// with their launch plans (core/cuda/launch.cuh): compiled by nvcc in sum.cu and by g++ against
// the CPU emulation of tests/cuda_emulation.
#pragma once
#include "core/cuda/launch.cuh"
#include "layers/cuda/reduce.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
namespace {

// Two passes, no atomics, so the order of summation depends on n alone and the result is the
// same bits on every run. Pass 1: a FIXED grid of kPartials blocks × 256 threads; thread t of
// block b sums elements b·256 + t, then every kPartials·256 after it, in double, and
// block_reduce combines the block's threads in warp order into partials[b]. Pass 2: one block
// adds the kPartials partials in block_reduce's order. 264 blocks fill an H100's 132 SMs twice
// for the large buffers (the gradient norm over every parameter); small buffers leave most
// threads idle, which costs microseconds. A fixed grid (not grid_for(n)) is what keeps the
// order independent of the device. Not measured (no GPU).
constexpr int kPartials = 264;
__device__ double sum_partials[kPartials];
__device__ double sum_total;  // the result, read by the host

template <bool kSquares>
__global__ void partial_sums_kernel(const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(kPartials) * blockDim.x) {
    const double v = x[i];
    s += kSquares ? v * v : v;  // the square in double, as the CPU's sum_squares
  }
  s = block_reduce(s, SumOp{});
  if (threadIdx.x == 0) sum_partials[blockIdx.x] = s;
}

// 288 threads: kPartials rounded up to whole warps, one partial per thread.
constexpr int kFinalThreads = (kPartials + kWarp - 1) / kWarp * kWarp;
__global__ void total_kernel() {
  double s = threadIdx.x < kPartials ? sum_partials[threadIdx.x] : 0.0;
  s = block_reduce(s, SumOp{});
  if (threadIdx.x == 0) sum_total = s;
}

// Leaves Σ x (or Σ x²) of x [n] in sum_total.
template <bool kSquares, class Launch>
void launch_sum(const Launch& launch, const float* x, int64_t n) {
  launch("partial_sums_kernel", partial_sums_kernel<kSquares>, dim3(kPartials), dim3(kThreads), 0,
         x, n);
  launch("total_kernel", total_kernel, dim3(1), dim3(kFinalThreads), 0);
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
