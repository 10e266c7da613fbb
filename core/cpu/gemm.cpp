#include "core/gemm.h"

#include <omp.h>

#include <atomic>
#include <chrono>

#include "core/cpu/gemm_bf16.h"

#ifdef HG_GEMM_DNNL
#include <oneapi/dnnl/dnnl.h>
#else
#include <cblas.h>
#endif

namespace hg {

#ifdef HG_GEMM_DNNL
const char* gemm_library() { return "dnnl"; }
#else
const char* gemm_library() { return "openblas"; }
#endif

namespace {

// Relaxed: the trainer sets it before any compute, and starting a parallel region orders it
// before the workers' reads.
std::atomic<MatmulPrecision> g_matmul_precision{MatmulPrecision::Fp32};

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
#ifdef HG_GEMM_DNNL
  dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C,
             ldc);
#else
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(M), static_cast<int>(N),
              static_cast<int>(K), alpha, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta,
              C, static_cast<int>(ldc));
#endif
}

// count_gemm_time's totals. A product nested in another (the bf16 path's sgemm over rounded
// operands) is the outer call's: only the outermost call on a thread counts.
std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_gemm_nanoseconds{0}, g_gemm_flops{0}, g_gemm_calls{0};
thread_local int t_gemm_depth = 0;

class GemmTimer {
 public:
  GemmTimer(int64_t M, int64_t N, int64_t K)
      : counted_(g_counting.load(std::memory_order_relaxed) && t_gemm_depth == 0),
        flops_(2 * M * N * K) {
    ++t_gemm_depth;
    if (counted_) start_ = std::chrono::steady_clock::now();
  }
  ~GemmTimer() {
    --t_gemm_depth;
    if (!counted_) return;
    const auto elapsed = std::chrono::steady_clock::now() - start_;
    g_gemm_nanoseconds.fetch_add(
        matmul_threads() * std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count(),
        std::memory_order_relaxed);
    g_gemm_flops.fetch_add(flops_, std::memory_order_relaxed);
    g_gemm_calls.fetch_add(1, std::memory_order_relaxed);
  }
  GemmTimer(const GemmTimer&) = delete;
  GemmTimer& operator=(const GemmTimer&) = delete;

 private:
  bool counted_;
  int64_t flops_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

void count_gemm_time(bool on) {
  if (on) {
    g_gemm_nanoseconds = 0;
    g_gemm_flops = 0;
    g_gemm_calls = 0;
  }
  g_counting.store(on, std::memory_order_relaxed);
}

GemmTotals gemm_totals() {
  return {1e-9 * static_cast<double>(g_gemm_nanoseconds.load()),
          static_cast<double>(g_gemm_flops.load()), g_gemm_calls.load()};
}

void set_matmul_precision(MatmulPrecision precision) {
  g_matmul_precision.store(precision, std::memory_order_relaxed);
}

MatmulPrecision matmul_precision() { return g_matmul_precision.load(std::memory_order_relaxed); }

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm(matmul_precision(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_rounded(bool a_rounded, bool b_rounded, bool trans_a, bool trans_b, int64_t M, int64_t N,
                  int64_t K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                  float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const GemmTimer timer(M, N, K);
  if (matmul_precision() == MatmulPrecision::Bf16)
    gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, nullptr, a_rounded, B, ldb, nullptr,
              b_rounded, beta, C, ldc);
  else
    gemm(MatmulPrecision::Fp32, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_bf16_copies(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float* A, int64_t lda, const uint16_t* A16, const float* B, int64_t ldb,
                      const uint16_t* B16, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const GemmTimer timer(M, N, K);
  gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, A16, false, B, ldb, B16, false, beta, C, ldc);
}

void gemm_bf16_given(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const uint16_t* A16, const uint16_t* B16, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const GemmTimer timer(M, N, K);
  gemm_bf16(trans_a, trans_b, M, N, K, alpha, nullptr, 0, A16, false, nullptr, 0, B16, false, beta,
            C, ldc, true);
}

void gemm(MatmulPrecision precision, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
          float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
          float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const GemmTimer timer(M, N, K);
  if (precision == MatmulPrecision::Bf16)
    gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, nullptr, false, B, ldb, nullptr, false,
              beta, C, ldc);
  else
    sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace hg
