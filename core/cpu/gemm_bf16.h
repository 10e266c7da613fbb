// The bf16 product behind gemm(MatmulPrecision::Bf16, ...) (core/gemm.h).
#pragma once
#include <cstdint>

namespace hg {

// Same contract as gemm, M, N > 0. A16 / B16, where given, are the operands' bfloat16 copies
// (gemm_bf16_copies, core/gemm.h), read instead of A / B; with a_rounded / b_rounded, A's / B's
// float32 elements are bfloat16 values already (gemm_rounded) and are not rounded again. small_b:
// gemm_bf16_given's lower bound for the matmul.
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const uint16_t* A16, bool a_rounded, const float* B,
               int64_t ldb, const uint16_t* B16, bool b_rounded, float beta, float* C, int64_t ldc,
               bool small_b = false);

// The threads a product runs on: oneDNN, like sgemm, runs on the caller alone inside a parallel
// region.
int matmul_threads();

// oneDNN's bf16 matmul over operands already rounded (bf16_bits, core/bf16.h) and dense as
// stored (A [M,K], or [K,M] when trans_a; B likewise): gemm_bf16's last step, which bench_gemm
// also calls to time the product without the rounding. false, with nothing done, where bf16 does
// not run natively (bf16_matmul_supported).
bool gemm_bf16_rounded(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const uint16_t* A, const uint16_t* B, float beta, float* C, int64_t ldc);

}  // namespace hg
