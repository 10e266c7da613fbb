// Matrix products: the only way layers reach a BLAS. Row-major, like the rest of the project.
//   C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C
// op(X) = X or Xᵀ; lda/ldb/ldc are row strides of the matrices as stored (so a column prefix
// of a wider matrix, like a MatFormer slice of w1, is just a smaller N with the same ld).
// The CPU backend is oneDNN's sgemm (AVX-512 kernels) or OpenBLAS, chosen at configure time.
#pragma once
#include <cstdint>

namespace hg {

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

const char* gemm_library();  // "dnnl" or "openblas", for logs and benchmarks

}  // namespace hg
