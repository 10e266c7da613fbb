#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "core/cuda/device.h"

namespace hg::cuda {

static void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

int device_count(std::string* reason) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (reason) *reason = cudaGetErrorString(e);
    return 0;
  }
  return n;
}

static cublasHandle_t handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t created;
    if (cublasCreate(&created) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
    return created;
  }();
  return h;
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  // cuBLAS is column-major: a row-major C = A·B is the column-major Cᵀ = Bᵀ·Aᵀ.
  cublasStatus_t s = cublasSgemm(handle(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(N),
                                 static_cast<int>(M), static_cast<int>(K), &alpha, B,
                                 static_cast<int>(ldb), A, static_cast<int>(lda), &beta, C,
                                 static_cast<int>(ldc));
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasSgemm failed");
}

float* device_alloc(int64_t n) {
  void* p = nullptr;
  check(cudaMalloc(&p, sizeof(float) * n), "cudaMalloc");
  return static_cast<float*>(p);
}
void device_free(float* p) { cudaFree(p); }
void copy_to_device(float* dst, const float* src, int64_t n) {
  check(cudaMemcpy(dst, src, sizeof(float) * n, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
}
void copy_to_host(float* dst, const float* src, int64_t n) {
  check(cudaMemcpy(dst, src, sizeof(float) * n, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
}

}  // namespace hg::cuda
