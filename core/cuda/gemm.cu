// Matrix products through cuBLAS (core/cuda/device.h), at core/gemm.h's matmul_precision():
//   fp32  cublasSgemm: float32 operands and accumulation.
//   bf16  both operands rounded to bfloat16 on the device (bf16_kernels.cuh: core/bf16.h's
//         rounding), then cublasGemmEx with bfloat16 inputs, float32 accumulation
//         (CUBLAS_COMPUTE_32F) and a float32 C: train.precision bf16's semantics on the CPU.
//         Each product rounds its operands again (a weight read by many products included): the
//         simple form; rounding each weight once per step is the next step once a GPU measures
//         what the conversions cost.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>

#include "core/cuda/bf16_kernels.cuh"
#include "core/cuda/check.h"
#include "core/cuda/device.h"
#include "core/gemm.h"

namespace hg::cuda {

static cublasHandle_t handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t created;
    if (cublasCreate(&created) != CUBLAS_STATUS_SUCCESS)
      throw std::runtime_error("cublasCreate failed");
    return created;
  }();
  return h;
}

namespace {

// The packed bfloat16 copy of operand `which` (0: A, 1: B), grown and never shrunk. One pair per
// process: the backend is called from one host thread, and cudaFree waits for the products
// queued before it, so growing never frees a buffer still being read.
uint16_t* bf16_operand(int which, int64_t n) {
  static uint16_t* buffers[2] = {nullptr, nullptr};
  static int64_t capacity[2] = {0, 0};
  if (n > capacity[which]) {
    cudaFree(buffers[which]);
    buffers[which] = nullptr;
    capacity[which] = 0;
    void* p = nullptr;
    check(cudaMalloc(&p, sizeof(uint16_t) * n), "cudaMalloc (bf16 operand)");
    buffers[which] = static_cast<uint16_t*>(p);
    capacity[which] = n;
  }
  return buffers[which];
}

// op(X) as stored: `rows` x `cols` of row stride ld, packed dense and rounded; returns the copy
// (leading dimension cols).
const uint16_t* rounded(int which, const float* X, int64_t rows, int64_t cols, int64_t ld) {
  uint16_t* packed = bf16_operand(which, rows * cols);
  launch_round_to_bf16(DeviceLaunch{}, packed, X, rows, cols, ld);
  return packed;
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc) {
  const int64_t a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;  // as stored, row-major
  const uint16_t* A16 = rounded(0, A, trans_a ? K : M, a_cols, lda);
  const uint16_t* B16 = rounded(1, B, trans_b ? N : K, b_cols, ldb);
  // Column-major, as below: Cᵀ = op(B)ᵀ·op(A)ᵀ.
  cublasStatus_t s = cublasGemmEx(
      handle(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
      static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &alpha, B16, CUDA_R_16BF,
      static_cast<int>(b_cols), A16, CUDA_R_16BF, static_cast<int>(a_cols), &beta, C, CUDA_R_32F,
      static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasGemmEx (bf16) failed");
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (matmul_precision() == MatmulPrecision::Bf16 && K > 0) {
    gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // cuBLAS is column-major: a row-major C = A·B is the column-major Cᵀ = Bᵀ·Aᵀ.
  cublasStatus_t s = cublasSgemm(
      handle(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
      static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &alpha, B,
      static_cast<int>(ldb), A, static_cast<int>(lda), &beta, C, static_cast<int>(ldc));
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasSgemm failed");
}

}  // namespace hg::cuda
