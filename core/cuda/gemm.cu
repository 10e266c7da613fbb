// Matrix products through cuBLASLt (core/cuda/device.h), at core/gemm.h's matmul_precision():
//   fp32  float32 operands, CUBLAS_COMPUTE_32F (true float32, not TF32).
//   bf16  both operands rounded to bfloat16 on the device (bf16_kernels.cuh: core/bf16.h's
//         rounding), then bfloat16 inputs, float32 accumulation (CUBLAS_COMPUTE_32F) and a
//         float32 C: train.precision bf16's semantics on the CPU. Each product rounds its operands
//         again (a weight read by many products included): the simple form; rounding each weight
//         once per step is the next step once a GPU measures what the conversions cost.
// cuBLASLt rather than cublasGemmEx: its heuristic is asked once per shape (the plans below are
// cached), it takes a workspace (split-K and stream-K kernels on Hopper need one), and its
// epilogues (bias, activation, bias gradient) are where fusing the linear layers goes next.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "core/cuda/bf16_kernels.cuh"
#include "core/cuda/check.h"
#include "core/cuda/device.h"
#include "core/gemm.h"

namespace hg::cuda {

namespace {

void check_lt(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLASLt ") + what + " failed (status " +
                             std::to_string(static_cast<int>(status)) + ")");
}

cublasLtHandle_t handle() {
  static cublasLtHandle_t h = [] {
    cublasLtHandle_t created;
    check_lt(cublasLtCreate(&created), "cublasLtCreate");
    return created;
  }();
  return h;
}

// 32 MiB, what NVIDIA recommends for Hopper's kernels; allocated once, kept for the process.
constexpr size_t kWorkspaceBytes = size_t{32} << 20;
void* workspace() {
  static void* w = [] {
    void* p = nullptr;
    check(cudaMallocAsync(&p, kWorkspaceBytes, nullptr), "cudaMallocAsync (cuBLASLt workspace)");
    return p;
  }();
  return w;
}

// The packed bfloat16 copy of operand `which` (0: A, 1: B), grown and never shrunk. One pair per
// process: the backend is called from one host thread, and a free ordered on the default stream
// (cudaFreeAsync; never cudaFree, core/cuda/device.cu) comes after the products queued before it,
// so growing never frees a buffer still being read.
uint16_t* bf16_operand(int which, int64_t n) {
  static uint16_t* buffers[2] = {nullptr, nullptr};
  static int64_t capacity[2] = {0, 0};
  if (n > capacity[which]) {
    if (buffers[which]) cudaFreeAsync(buffers[which], nullptr);
    buffers[which] = nullptr;
    capacity[which] = 0;
    void* p = nullptr;
    check(cudaMallocAsync(&p, sizeof(uint16_t) * n, nullptr), "cudaMallocAsync (bf16 operand)");
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

// One product shape's descriptors and the algorithm the heuristic chose for it, column-major as
// cuBLAS is: the row-major C [M, N] = op(A)·op(B) is the column-major Cᵀ [N, M] = op(B)ᵀ·op(A)ᵀ,
// so cuBLASLt's first operand is B and its second A.
// Owns its descriptors (the plan cache lives until the process ends).
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t first = nullptr, second = nullptr, out = nullptr;
  cublasLtMatmulAlgo_t algo{};
  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  Plan(Plan&& other) noexcept { *this = std::move(other); }
  Plan& operator=(Plan&& other) noexcept {
    std::swap(desc, other.desc);
    std::swap(first, other.first);
    std::swap(second, other.second);
    std::swap(out, other.out);
    std::swap(algo, other.algo);
    return *this;
  }
  ~Plan() {
    for (cublasLtMatrixLayout_t l : {first, second, out})
      if (l) cublasLtMatrixLayoutDestroy(l);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};
using PlanKey = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool>;

cublasLtMatrixLayout_t layout(cudaDataType type, int64_t rows, int64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t l = nullptr;
  check_lt(cublasLtMatrixLayoutCreate(&l, type, static_cast<uint64_t>(rows),
                                      static_cast<uint64_t>(cols), ld),
           "cublasLtMatrixLayoutCreate");
  return l;
}

Plan make_plan(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, int64_t lda,
               int64_t ldb, int64_t ldc, bool bf16) {
  Plan p;
  check_lt(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
           "cublasLtMatmulDescCreate");
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  check_lt(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                          sizeof op_first),
           "set TRANSA");
  check_lt(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                          sizeof op_second),
           "set TRANSB");
  const cudaDataType in = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  // Column-major shapes as stored: the first operand (B) is N x K, or K x N transposed.
  p.first = trans_b ? layout(in, K, N, ldb) : layout(in, N, K, ldb);
  p.second = trans_a ? layout(in, M, K, lda) : layout(in, K, M, lda);
  p.out = layout(CUDA_R_32F, N, M, ldc);
  cublasLtMatmulPreference_t preference = nullptr;
  check_lt(cublasLtMatmulPreferenceCreate(&preference), "cublasLtMatmulPreferenceCreate");
  const uint64_t bytes = kWorkspaceBytes;
  check_lt(cublasLtMatmulPreferenceSetAttribute(
               preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes, sizeof bytes),
           "set the workspace");
  cublasLtMatmulHeuristicResult_t best{};
  int found = 0;
  const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(
      handle(), p.desc, p.first, p.second, p.out, p.out, preference, 1, &best, &found);
  cublasLtMatmulPreferenceDestroy(preference);
  if (s != CUBLAS_STATUS_SUCCESS || found == 0)
    throw std::runtime_error("cuBLASLt has no algorithm for a " +
                             std::string(bf16 ? "bf16" : "fp32") + " product of " +
                             std::to_string(M) + "x" + std::to_string(K) + " by " +
                             std::to_string(K) + "x" + std::to_string(N));
  p.algo = best.algo;
  return p;
}

// The plan of this shape, made on first use. The backend calls from one host thread.
const Plan& plan(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, int64_t lda,
                 int64_t ldb, int64_t ldc, bool bf16) {
  static std::map<PlanKey, Plan> plans;
  const PlanKey key{trans_a, trans_b, M, N, K, lda, ldb, ldc, bf16};
  auto it = plans.find(key);
  if (it == plans.end())
    it = plans.emplace(key, make_plan(trans_a, trans_b, M, N, K, lda, ldb, ldc, bf16)).first;
  return it->second;
}

void matmul(const Plan& p, float alpha, const void* A, const void* B, float beta, float* C) {
  check_lt(cublasLtMatmul(handle(), p.desc, &alpha, B, p.first, A, p.second, &beta, C, p.out, C,
                          p.out, &p.algo, workspace(), kWorkspaceBytes, nullptr),
           "cublasLtMatmul");
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // C = beta·C, which cuBLASLt's layouts of zero columns need not support
    if (beta == 0.0f)
      check(cudaMemset2D(C, sizeof(float) * ldc, 0, sizeof(float) * N, M), "cudaMemset2D");
    else if (beta != 1.0f)
      throw std::invalid_argument("cuda gemm: K = 0 with beta other than 0 or 1");
    return;
  }
  if (matmul_precision() == MatmulPrecision::Bf16) {
    const int64_t a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;  // as stored, row-major
    const uint16_t* A16 = rounded(0, A, trans_a ? K : M, a_cols, lda);
    const uint16_t* B16 = rounded(1, B, trans_b ? N : K, b_cols, ldb);
    matmul(plan(trans_a, trans_b, M, N, K, a_cols, b_cols, ldc, true), alpha, A16, B16, beta, C);
    return;
  }
  matmul(plan(trans_a, trans_b, M, N, K, lda, ldb, ldc, false), alpha, A, B, beta, C);
}

}  // namespace hg::cuda
