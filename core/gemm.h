// Matrix products: the only way layers reach a BLAS. Row-major, like the rest of the project.
//   C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C
// op(X) = X or Xᵀ; lda/ldb/ldc are row strides of the matrices as stored (so a column prefix
// of a wider matrix, like a MatFormer slice of w1, is just a smaller N with the same ld).
// The CPU backend is oneDNN's sgemm (AVX-512 kernels) or OpenBLAS, chosen at configure time.
//
// Precision (train.precision, ARCHITECTURE.md §9.1):
//   fp32  float32 operands, float32 accumulation: dnnl_sgemm or cblas_sgemm, as always.
//   bf16  both operands rounded to bfloat16 (round to nearest even, core/bf16.h), the product
//         accumulated and stored in float32, alpha and beta applied in float32. With oneDNN on a
//         CPU with AVX512-BF16 this runs oneDNN's bf16 matmul (1.8× sgemm's rate on Zen 4);
//         otherwise, and for tiny products where a matmul's fixed cost dominates, the rounded
//         operands are held as float32 (products of two bfloat16 are exact in float32) and go
//         through sgemm: the same numbers up to the order of the float32 sums, no faster than
//         fp32. One difference: oneDNN's matmul (the AVX512-BF16 dot product) treats a denormal
//         operand (magnitude below 2^-126) as zero, where the sgemm path keeps it. A call
//         repeated with the same arguments and thread count gives the same bits.
#pragma once
#include <cstdint>
#include <memory>
#if __cplusplus >= 202002L
#include <span>
#endif
#include <string>
#include <utility>
#include <vector>

namespace hg {

enum class MatmulPrecision { Fp32, Bf16 };
#if __cplusplus >= 202002L  // the CUDA sources (hg_cuda) compile as C++17: no std::span there
inline std::span<const char* const> enum_names(MatmulPrecision) {  // core/enum_names.h
  static constexpr const char* names[] = {"fp32", "bf16"};
  return names;
}
#endif

// At matmul_precision(): fp32 unless a backend set it. With fp32 this is the sgemm of old, bit
// for bit.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// At the precision given, whatever matmul_precision() says.
void gemm(MatmulPrecision precision, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
          float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
          float* C, int64_t ldc);

// gemm at matmul_precision(), for operands that their caller has already rounded to bfloat16
// whenever that precision is bf16 (every element equal to round_to_bf16 of itself, core/bf16.h):
// a_rounded / b_rounded skip rounding A / B. For an operand that several products read, like the
// attention's output gradient (four products a query block), or one that only products read,
// which its producer can round in place (the attention's score gradients): its owner rounds it
// once. The same bits as gemm on the same operands; at fp32 it is gemm. An operand said to be
// rounded that is not gives wrong results, not an error.
void gemm_rounded(bool a_rounded, bool b_rounded, bool trans_a, bool trans_b, int64_t M, int64_t N,
                  int64_t K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                  float beta, float* C, int64_t ldc);

// bf16 copies of operands that several products read, made once: out[rows × cols] (dense) =
// bf16_bits (core/bf16.h) of in[rows × cols] (row stride ld), on the rank's threads. A linear
// layer's output gradient, read by the dX and the dW products, is one.
void bf16_copy(uint16_t* out, const float* in, int64_t rows, int64_t cols, int64_t ld);
// The same into a new buffer [rows × cols]; an empty pointer when rows·cols = 0.
std::unique_ptr<uint16_t[]> bf16_copy_of(const float* in, int64_t rows, int64_t cols, int64_t ld);

// gemm at bf16 whatever matmul_precision() says, with A and/or B given as their bf16 copies
// (bf16_copy, or written by the operand's producer: the same bits), dense as stored (A [M,K], or
// [K,M] when trans_a; B likewise). A null copy means: round that operand from its float32 as gemm
// does; a given one is read instead of the float32 pointer, which may then be null. The same bits
// as gemm(MatmulPrecision::Bf16, ...) on the float32 operands.
void gemm_bf16_copies(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float* A, int64_t lda, const uint16_t* A16, const float* B, int64_t ldb,
                      const uint16_t* B16, float beta, float* C, int64_t ldc);

// gemm at bf16 with both operands given as bf16 copies, dense as stored (A [M,K], or [K,M] when
// trans_a; B likewise), for the attention's many small block products, whose operands are rounded
// once per call (queries, keys, values, the output gradient) or written as bf16 by their
// producer (probabilities, score gradients): these run on oneDNN's matmul from 2^15
// multiply-adds per thread on, where gemm and gemm_bf16_copies go on rounding into sgemm up to
// 2^19 (with nothing to round the matmul wins much earlier: 32×160×64 on Sapphire Rapids' AMX at
// 420 GFLOP/s against sgemm's 142). So its bits are not theirs for products between the two
// bounds; they are deterministic (the same call, the same bits).
void gemm_bf16_given(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const uint16_t* A16, const uint16_t* B16, float beta, float* C, int64_t ldc);

// The precision of the plain gemm calls. Process-wide (an atomic), not per thread: the CPU
// kernels call gemm from OpenMP worker threads, which a thread_local set on the main thread would
// not reach. Rule: one precision per process at a time. The trainer sets it once, from
// train.precision, before any compute; tests and benchmarks use MatmulPrecisionScope. Setting it
// while other threads are in gemm gives them either precision.
void set_matmul_precision(MatmulPrecision precision);
MatmulPrecision matmul_precision();

// Sets the process-wide precision for its lifetime and restores the previous one.
class MatmulPrecisionScope {
 public:
  explicit MatmulPrecisionScope(MatmulPrecision precision) : previous_(matmul_precision()) {
    set_matmul_precision(precision);
  }
  ~MatmulPrecisionScope() { set_matmul_precision(previous_); }
  MatmulPrecisionScope(const MatmulPrecisionScope&) = delete;
  MatmulPrecisionScope& operator=(const MatmulPrecisionScope&) = delete;

 private:
  MatmulPrecision previous_;
};

// Time in matrix products, for benchmarks (bench_train_step says how much of a step the products
// take, and at what rate). While on, each outermost call of the functions above adds to
// process-wide totals its duration in core-seconds (a call outside a parallel region occupies all
// the rank's threads, one inside a region its own thread), operand rounding included, and its
// 2·M·N·K. Off, the default, it costs one relaxed load per call. count_gemm_time(true) restarts
// the totals at zero.
struct GemmTotals {
  double core_seconds = 0, flops = 0;
  int64_t calls = 0;
};
void count_gemm_time(bool on);
GemmTotals gemm_totals();

// The weights' bf16 copies, made once per training step instead of once per product (issue 14:
// "weights converted once per step"). While a scope lives, a bf16 product on the matmul path (not
// the small products' sgemm path) whose A or B lies inside one of `weights` reads it from a copy
// made at its first use and kept until the scope ends: with micro-batches of 2, each weight was
// rounded 8 times a step (forward and dX product per micro-batch), now once. An operand read
// transposed (a layer's dX = dY·Wᵀ) is copied transposed, so the matmul takes it as plain [K,N]:
// oneDNN's AMX matmul ran 6144x1024x256 with a transposed B at 526 GFLOP/s against 727 plain
// (Sapphire Rapids, 1 thread). The same bits as without the scope
// (Bf16Gemm.WeightCopiesGiveTheSameBits). Nothing may write the weights while the scope lives: the
// trainer opens it around a step's forward and backward passes and ends it before the optimizer.
// One scope at a time (an inner one does nothing); at fp32 it costs nothing. weights: (first
// element, element count).
class WeightCopiesScope {
 public:
  explicit WeightCopiesScope(const std::vector<std::pair<const float*, int64_t>>& weights);
  ~WeightCopiesScope();
  WeightCopiesScope(const WeightCopiesScope&) = delete;
  WeightCopiesScope& operator=(const WeightCopiesScope&) = delete;

 private:
  bool owner_;
};

// Whether bf16 products run natively here (oneDNN build, CPU with AVX512-BF16); if not, and
// `reason` is given, it says why. gemm(Bf16, ...) is correct either way, but where this is false
// it is slower than fp32, so the trainer is to refuse train.precision bf16 there (UsageError,
// exit 2, with `reason`) rather than run a "fast" setting slowly.
bool bf16_matmul_supported(std::string* reason = nullptr);

const char* gemm_library();  // "dnnl" or "openblas", for logs and benchmarks

}  // namespace hg
