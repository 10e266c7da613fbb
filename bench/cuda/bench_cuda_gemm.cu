// The GPU's matrix-product ceilings, measured on the device itself (issue 15's device check):
// cuBLAS with bf16 operands and float32 accumulation and output (the train.precision bf16
// semantics of ARCHITECTURE.md §9.1), and plain float32 (TF32 off), on a large square product and
// on the reference model's own shapes (rows = batch·seq_len = 6144). Prints TFLOP/s; MFU elsewhere
// is measured against the bf16 square figure. Without a device it says so and exits 0: a
// benchmark prints numbers, it never fails a build.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}
void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(int(s)));
}

__global__ void fill(float* x, int64_t n, float scale) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) x[i] = scale * float((i * 2654435761u) % 1000u) / 1000.0f - 0.5f * scale;
}
__global__ void to_bf16(__nv_bfloat16* y, const float* x, int64_t n) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = __float2bfloat16_rn(x[i]);
}

// C [m, n] = A [m, k] · B [k, n] (row-major, as the CPU gemm), `repeats` times after 3 warm-ups:
// TFLOP/s of the mean.
double time_product(cublasHandle_t handle, bool bf16, int m, int n, int k, int repeats) {
  float *a, *b, *c;
  __nv_bfloat16 *a16 = nullptr, *b16 = nullptr;
  check(cudaMalloc(&a, sizeof(float) * m * int64_t(k)), "cudaMalloc");
  check(cudaMalloc(&b, sizeof(float) * k * int64_t(n)), "cudaMalloc");
  check(cudaMalloc(&c, sizeof(float) * m * int64_t(n)), "cudaMalloc");
  fill<<<(m * int64_t(k) + 255) / 256, 256>>>(a, m * int64_t(k), 1.0f);
  fill<<<(k * int64_t(n) + 255) / 256, 256>>>(b, k * int64_t(n), 0.1f);
  if (bf16) {
    check(cudaMalloc(&a16, sizeof(__nv_bfloat16) * m * int64_t(k)), "cudaMalloc");
    check(cudaMalloc(&b16, sizeof(__nv_bfloat16) * k * int64_t(n)), "cudaMalloc");
    to_bf16<<<(m * int64_t(k) + 255) / 256, 256>>>(a16, a, m * int64_t(k));
    to_bf16<<<(k * int64_t(n) + 255) / 256, 256>>>(b16, b, k * int64_t(n));
  }
  const float one = 1.0f, zero = 0.0f;
  // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: cuBLAS's (n, m, k) with B first.
  auto product = [&] {
    if (bf16)
      check(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, b16, CUDA_R_16BF, n, a16,
                         CUDA_R_16BF, k, &zero, c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT),
            "cublasGemmEx bf16");
    else
      check(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, b, n, a, k, &zero, c, n),
            "cublasSgemm");
  };
  for (int i = 0; i < 3; ++i) product();
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  check(cudaEventRecord(start), "cudaEventRecord");
  for (int i = 0; i < repeats; ++i) product();
  check(cudaEventRecord(stop), "cudaEventRecord");
  check(cudaEventSynchronize(stop), "cudaEventSynchronize");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
  for (void* p : {static_cast<void*>(a), static_cast<void*>(b), static_cast<void*>(c),
                  static_cast<void*>(a16), static_cast<void*>(b16)})
    if (p) check(cudaFree(p), "cudaFree");
  return 2.0 * m * double(n) * k * repeats / (ms * 1e-3) / 1e12;
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("bench_cuda_gemm: no CUDA device here; nothing measured\n");
    return 0;
  }
  try {
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    cublasHandle_t handle;
    check(cublasCreate(&handle), "cublasCreate");
    check(cublasSetMathMode(handle, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");  // no TF32
    std::printf("device: %s, %d multiprocessors\n", prop.name, prop.multiProcessorCount);
    std::printf("%-28s %10s %10s\n", "product m x n x k", "fp32", "bf16");
    struct Shape {
      int m, n, k;
      int repeats;
    };
    // The square ceiling, then the reference model's products: Q/K/V/O (d 256), the FFN (d 256,
    // F 1024) both ways, and the wider configuration's FFN (d 1024, F 4096).
    for (Shape s : std::vector<Shape>{{8192, 8192, 8192, 10},
                                      {6144, 256, 256, 200},
                                      {6144, 1024, 256, 100},
                                      {6144, 256, 1024, 100},
                                      {6144, 4096, 1024, 20},
                                      {6144, 1024, 4096, 20}}) {
      const double fp32 = time_product(handle, false, s.m, s.n, s.k, s.repeats);
      const double bf16 = time_product(handle, true, s.m, s.n, s.k, s.repeats);
      std::printf("%6d x %5d x %5d          %7.1f TF %7.1f TF\n", s.m, s.n, s.k, fp32, bf16);
    }
    cublasDestroy(handle);
  } catch (const std::exception& e) {
    std::printf("bench_cuda_gemm: %s\n", e.what());
    return 1;
  }
  return 0;
}
