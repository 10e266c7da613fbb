// The cuBLAS calls the backend makes (core/cuda/gemm.cu), for the emulated CUDA backend
// (cuda_runtime.h here): column-major Sgemm computed by the CPU's float32 gemm (core/gemm.h), so
// the emulated fp32 products equal the CPU backend's bit for bit; GemmEx with bfloat16 inputs
// widened to float32 (exact) and the same float32 gemm, float32 accumulation. Not cuBLAS.
#pragma once
#include "tests/cuda_emulation/runtime/cuda_runtime.h"

using cublasHandle_t = struct EmulatedCublas*;
enum cublasStatus_t { CUBLAS_STATUS_SUCCESS = 0 };
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cudaDataType { CUDA_R_32F = 0, CUDA_R_16BF = 14 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };

cublasStatus_t cublasCreate(cublasHandle_t* handle);
cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float* alpha,
                           const float* A, int lda, const float* B, int ldb, const float* beta,
                           float* C, int ldc);
// Only the types gemm.cu passes: A and B CUDA_R_16BF, C CUDA_R_32F, CUBLAS_COMPUTE_32F.
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType a_type, int lda, const void* B,
                            cudaDataType b_type, int ldb, const void* beta, void* C,
                            cudaDataType c_type, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo);
