// The CUDA backend's entry points. Compiled in CI (nvcc is there); no machine of this project has
// a GPU, so nothing here has ever run on a device: the op tests report themselves skipped.
#pragma once
#include <cstdint>
#include <string>

namespace hg::cuda {

// Number of usable devices; 0 when the driver is only the stub (cudaErrorInsufficientDriver)
// or no device exists. `reason` receives the CUDA error string in that case.
int device_count(std::string* reason = nullptr);

// Registers device memory as Device::Cuda's (core/device.h): zero-filled allocations
// (cudaMallocAsync + cudaMemsetAsync on the default stream, from the device's pool, which keeps
// freed memory; 256-byte aligned, past the 64 the contract asks), cudaFreeAsync, and cudaMemcpy
// for the three copy directions. Never cudaFree, which synchronises the device and so can hang
// behind an NCCL op waiting for a peer (device.cu). The CUDA backend calls it when it is created.
void register_memory();

// Makes device local_rank % device_count() current for this host thread (one device per rank).
void select_device(int local_rank);
// The current device's memory in bytes (cudaMemGetInfo's total).
double memory_bytes();

// Row-major C = alpha·op(A)·op(B) + beta·C on device pointers, through cuBLAS (same contract as
// hg::gemm in core/gemm.h, at its matmul_precision(): fp32, or bf16 operands with float32
// accumulation; gemm.cu says how).
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Host <-> device copies for tests and the trainer's staging (they synchronise: cudaMemcpy);
// allocations stream-ordered as above.
float* device_alloc(int64_t n);
void device_free(float* p);
void copy_to_device(float* dst, const float* src, int64_t n);
void copy_to_host(float* dst, const float* src, int64_t n);
// Token ids (embedding, cross-entropy targets) live on the device as int32, as on the host.
int32_t* device_alloc_int32(int64_t n);
void device_free(int32_t* p);
void copy_to_device(int32_t* dst, const int32_t* src, int64_t n);

}  // namespace hg::cuda
