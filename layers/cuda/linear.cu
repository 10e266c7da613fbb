// Linear layer y = x W + b on the device (layers/linear.h): the products through cuBLAS, the
// bias broadcast (elementwise.cu) and the bias gradient's column sums here. COMPILED, NOT RUN (no
// GPU on this project's machines).
#include <cuda_runtime.h>

#include "core/cuda/check.h"
#include "core/cuda/device.h"
#include "layers/cuda/ops.h"
#include "layers/cuda/reduce.cuh"

namespace hg::cuda {

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

}  // namespace

void add_column_sums(float* dst, const float* x, int64_t rows, int64_t cols, int64_t ld) {
  if (cols == 0) return;
  const auto blocks = static_cast<unsigned>((cols + kWarp - 1) / kWarp);
  column_sums_kernel<<<blocks, dim3(kWarp, kRowLanes)>>>(dst, x, rows, cols, ld);
  check_launch("column_sums_kernel");
}

void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                    int64_t rows, int64_t in_dim, int64_t out_dim, int64_t ldw) {
  if (rows == 0) return;
  // out [rows, out_dim] = inp [rows, in_dim] · W[:, :out_dim] (row stride ldw)
  gemm(false, false, rows, out_dim, in_dim, 1.0f, inp, in_dim, weight, ldw, 0.0f, out, out_dim);
  if (bias != nullptr) add_row_bias(out, bias, rows, out_dim);
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t rows, int64_t in_dim, int64_t out_dim,
                     int64_t ldw) {
  if (rows == 0) return;
  // dinp [rows, in_dim] = dout [rows, out_dim] · W[:, :out_dim]ᵀ
  if (dinp != nullptr)
    gemm(false, true, rows, in_dim, out_dim, 1.0f, dout, out_dim, weight, ldw, 0.0f, dinp, in_dim);
  // dW[:, :out_dim] += inpᵀ · dout (beta 1); columns past out_dim are left untouched.
  gemm(true, false, in_dim, out_dim, rows, 1.0f, inp, in_dim, dout, out_dim, 1.0f, dweight, ldw);
  if (dbias != nullptr) add_column_sums(dbias, dout, rows, out_dim, out_dim);
}

}  // namespace hg::cuda
