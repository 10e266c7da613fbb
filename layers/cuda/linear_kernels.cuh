// The linear layer's bias-gradient kernel (column sums, layers/linear.h),
// with their launch plans (core/cuda/launch.cuh): compiled by nvcc in linear.cu and by g++ against
// the CPU emulation of tests/cuda_emulation.
#pragma once
#include "core/cuda/launch.cuh"
#include "layers/cuda/reduce.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {

// dst[c] += Σ_r x[r·ld + c]: reduce.cuh's column-sum shape, blockDim (32, kRowLanes), one block
// per 32 consecutive columns; each warp reads 32 contiguous floats of a row (coalesced), and the
// kRowLanes partials are added in lane order, so the result is the same bits on every run.
__global__ void column_sums_kernel(float* dst, const float* x, int64_t rows, int64_t cols,
                                   int64_t ld) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kWarp + threadIdx.x;
  float partial[1] = {0.0f};
  if (col < cols)
    for (int64_t r = threadIdx.y; r < rows; r += kRowLanes) partial[0] += x[r * ld + col];
  float* const out[1] = {dst};
  add_column_totals<1>(out, partial, col, cols);
}

template <class Launch>
void launch_add_column_sums(const Launch& launch, float* dst, const float* x, int64_t rows,
                            int64_t cols, int64_t ld) {
  if (cols == 0) return;
  const auto blocks = static_cast<unsigned>((cols + kWarp - 1) / kWarp);
  launch("column_sums_kernel", column_sums_kernel, dim3(blocks), dim3(kWarp, kRowLanes), 0, dst, x,
         rows, cols, ld);
}

}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
