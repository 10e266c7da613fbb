// Device query, allocation and host <-> device copies (core/cuda/device.h).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "core/cuda/check.h"
#include "core/cuda/device.h"

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

int32_t* device_alloc_int32(int64_t n) {
  void* p = nullptr;
  check(cudaMalloc(&p, sizeof(int32_t) * n), "cudaMalloc (int32)");
  return static_cast<int32_t*>(p);
}
void device_free(int32_t* p) { cudaFree(p); }
void copy_to_device(int32_t* dst, const int32_t* src, int64_t n) {
  check(cudaMemcpy(dst, src, sizeof(int32_t) * n, cudaMemcpyHostToDevice),
        "cudaMemcpy H2D (int32)");
}

}  // namespace hg::cuda
