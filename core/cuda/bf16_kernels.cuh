// float32 -> bfloat16 for the bf16 matrix products (train.precision bf16, core/gemm.h): the
// rounding of core/bf16.h (nearest, ties to even; a NaN stays a quiet NaN of its sign) on the
// device, packing a [rows, cols] matrix of row stride ld into a dense [rows, cols] of bfloat16 bit
// patterns for cuBLAS. With its launch plan (core/cuda/launch.cuh): compiled by nvcc in gemm.cu and
// by g++ against the CPU emulation of tests/cuda_emulation.
#pragma once
#include <cstring>

#include "core/cuda/launch.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
namespace {

// core/bf16.h's bf16_bits in device code (memcpy for the bit cast: std::bit_cast is C++20).
__device__ uint16_t bf16_bits_on_device(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// One thread per element in a grid-stride loop over the packed output: consecutive threads write
// consecutive bfloat16s and read consecutive floats of a row. Memory-bound (6 bytes an element).
__global__ void round_to_bf16_kernel(uint16_t* out, const float* in, int64_t rows, int64_t cols,
                                     int64_t ld) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols;
    out[i] = bf16_bits_on_device(in[r * ld + (i - r * cols)]);
  }
}

template <class Launch>
void launch_round_to_bf16(const Launch& launch, uint16_t* out, const float* in, int64_t rows,
                          int64_t cols, int64_t ld) {
  const int64_t n = rows * cols;
  if (n > 0)
    launch("round_to_bf16_kernel", round_to_bf16_kernel, dim3(grid_for(n)), dim3(kThreads), 0, out,
           in, rows, cols, ld);
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
