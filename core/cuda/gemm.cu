// Matrix products through cuBLAS (core/cuda/device.h).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>

#include "core/cuda/device.h"

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

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  // cuBLAS is column-major: a row-major C = A·B is the column-major Cᵀ = Bᵀ·Aᵀ.
  cublasStatus_t s = cublasSgemm(
      handle(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
      static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &alpha, B,
      static_cast<int>(ldb), A, static_cast<int>(lda), &beta, C, static_cast<int>(ldc));
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasSgemm failed");
}

}  // namespace hg::cuda
