// Device query, allocation and host <-> device copies (core/cuda/device.h).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "core/cuda/check.h"
#include "core/cuda/device.h"
#include "core/device.h"

namespace hg::cuda {

int device_count(std::string* reason) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (reason) *reason = cudaGetErrorString(e);
    return 0;
  }
  return n;
}

void select_device(int local_rank) {
  std::string reason;
  const int n = device_count(&reason);
  if (n == 0) throw std::runtime_error("select_device: no CUDA device (" + reason + ")");
  check(cudaSetDevice(local_rank % n), "cudaSetDevice");
}

double memory_bytes() {
  size_t free_bytes = 0, total_bytes = 0;
  check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  return static_cast<double>(total_bytes);
}

// Stream-ordered on the default stream (below, allocate_zeroed: why).
static void* stream_alloc(size_t bytes, const char* what) {
  void* p = nullptr;
  check(cudaMallocAsync(&p, bytes, nullptr), what);
  return p;
}
static void stream_free(void* p) {
  if (p) cudaFreeAsync(p, nullptr);  // no throw: called from destructors
}

float* device_alloc(int64_t n) {
  return static_cast<float*>(stream_alloc(sizeof(float) * n, "cudaMallocAsync"));
}
void device_free(float* p) { stream_free(p); }
void copy_to_device(float* dst, const float* src, int64_t n) {
  check(cudaMemcpy(dst, src, sizeof(float) * n, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
}
void copy_to_host(float* dst, const float* src, int64_t n) {
  check(cudaMemcpy(dst, src, sizeof(float) * n, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
}

namespace {

// Plain functions for core/device.h's DeviceMemory. The copies are cudaMemcpy, which waits for
// the kernels before it on the default stream: a Tensor read on the host is the finished value.
// Allocations are stream-ordered on the default stream (cudaMallocAsync / cudaFreeAsync, from the
// device's pool, which keeps what is freed: register_memory): cudaFree would synchronise the whole
// device, and with an NCCL receive waiting on its own stream for a peer that waits for this rank,
// that never returns (NCCL's known hang with cudaFree; PyTorch's caching allocator avoids it too).
void* allocate_zeroed(int64_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = stream_alloc(static_cast<size_t>(bytes), "cudaMallocAsync (Tensor)");
  check(cudaMemsetAsync(p, 0, static_cast<size_t>(bytes), nullptr), "cudaMemsetAsync (Tensor)");
  return p;
}
void release(void* p) { stream_free(p); }
void zero(void* p, int64_t bytes) {
  if (bytes) check(cudaMemset(p, 0, static_cast<size_t>(bytes)), "cudaMemset");
}
void copy_bytes(void* dst, const void* src, int64_t bytes, cudaMemcpyKind kind, const char* what) {
  if (bytes) check(cudaMemcpy(dst, src, static_cast<size_t>(bytes), kind), what);
}
void copy_d2d(void* dst, const void* src, int64_t bytes) {
  copy_bytes(dst, src, bytes, cudaMemcpyDeviceToDevice, "cudaMemcpy D2D (Tensor)");
}
void copy_d2h(void* host, const void* src, int64_t bytes) {
  copy_bytes(host, src, bytes, cudaMemcpyDeviceToHost, "cudaMemcpy D2H (Tensor)");
}
void copy_h2d(void* dst, const void* host, int64_t bytes) {
  copy_bytes(dst, host, bytes, cudaMemcpyHostToDevice, "cudaMemcpy H2D (Tensor)");
}

}  // namespace

void register_memory() {
  // The pool keeps freed memory for the next allocation instead of returning it to the driver at
  // each synchronisation (its default threshold, 0): a step's tensors are reused, not remapped.
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  cudaMemPool_t pool = nullptr;
  check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
  uint64_t keep_all = UINT64_MAX;
  check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all),
        "cudaMemPoolSetAttribute");
  register_device_memory(Device::Cuda,
                         {allocate_zeroed, release, zero, copy_d2d, copy_d2h, copy_h2d});
}

int32_t* device_alloc_int32(int64_t n) {
  return static_cast<int32_t*>(stream_alloc(sizeof(int32_t) * n, "cudaMallocAsync (int32)"));
}
void device_free(int32_t* p) { stream_free(p); }
void copy_to_device(int32_t* dst, const int32_t* src, int64_t n) {
  check(cudaMemcpy(dst, src, sizeof(int32_t) * n, cudaMemcpyHostToDevice),
        "cudaMemcpy H2D (int32)");
}

}  // namespace hg::cuda
