// The linear layer (layers/linear.h): its bias-gradient kernel (column sums) and the layer
// itself over a given gemm,
// with their launch plans (core/cuda/launch.cuh): compiled by nvcc in linear.cu and by g++ against
// the CPU emulation of tests/cuda_emulation.
#pragma once
#include "core/cuda/launch.cuh"
#include "layers/cuda/elementwise_kernels.cuh"
#include "layers/cuda/reduce.cuh"

namespace hg::cuda {
inline namespace HG_CUDA_KERNELS {
namespace {

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

// The linear layer on the device: `gemm` has core/gemm.h's row-major contract (cuda::gemm, cuBLAS,
// in linear.cu; the CPU's gemm under the emulation), the bias add and column sums are kernels.
// out [rows, out_dim] (=) = inp [rows, in_dim] · W[:, :out_dim] (row stride ldw) + bias.
template <class Launch, class Gemm>
void run_linear_forward(const Launch& launch, const Gemm& gemm, float* out, const float* inp,
                        const float* weight, const float* bias, int64_t rows, int64_t in_dim,
                        int64_t out_dim, int64_t ldw) {
  if (rows == 0) return;
  gemm(false, false, rows, out_dim, in_dim, 1.0f, inp, in_dim, weight, ldw, 0.0f, out, out_dim);
  if (bias != nullptr) launch_add_row_bias(launch, out, bias, rows, out_dim);
}

// dinp [rows, in_dim] (=, skipped when null) = dout · W[:, :out_dim]ᵀ; dW[:, :out_dim] += inpᵀ ·
// dout (columns past out_dim untouched; skipped when null);
// dbias += column sums of dout (may be null).
template <class Launch, class Gemm>
void run_linear_backward(const Launch& launch, const Gemm& gemm, float* dinp, float* dweight,
                         float* dbias, const float* dout, const float* inp, const float* weight,
                         int64_t rows, int64_t in_dim, int64_t out_dim, int64_t ldw) {
  if (rows == 0) return;
  if (dinp != nullptr)
    gemm(false, true, rows, in_dim, out_dim, 1.0f, dout, out_dim, weight, ldw, 0.0f, dinp, in_dim);
  if (dweight != nullptr)
    gemm(true, false, in_dim, out_dim, rows, 1.0f, inp, in_dim, dout, out_dim, 1.0f, dweight, ldw);
  if (dbias != nullptr) launch_add_column_sums(launch, dbias, dout, rows, out_dim, out_dim);
}

}  // namespace
}  // namespace HG_CUDA_KERNELS
}  // namespace hg::cuda
