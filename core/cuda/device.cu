// Device query, allocation and host <-> device copies (core/cuda/device.h).
#include <cuda_runtime.h>

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
