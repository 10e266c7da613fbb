// The one cuBLAS call the backend makes (core/cuda/gemm.cu), for the emulated CUDA backend
// (cuda_runtime.h here): column-major Sgemm computed by the CPU's gemm (core/gemm.h), so the
// emulated products equal the CPU backend's bit for bit. Not cuBLAS.
#pragma once
#include "tests/cuda_emulation/runtime/cuda_runtime.h"

using cublasHandle_t = struct EmulatedCublas*;
enum cublasStatus_t { CUBLAS_STATUS_SUCCESS = 0 };
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };

cublasStatus_t cublasCreate(cublasHandle_t* handle);
cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float* alpha,
                           const float* A, int lda, const float* B, int ldb, const float* beta,
                           float* C, int ldc);
