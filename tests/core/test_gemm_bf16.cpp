// The bf16 matrix product (core/gemm.h, core/bf16.h) against references written here
// independently: a rounding that compares the dropped half with the halfway point, and a product
// of the rounded operands accumulated in double.
#include <gtest/gtest.h>
#include <omp.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/enum_names.h"
#include "core/gemm.h"
#include "core/random.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

uint32_t bits_of(float x) { return std::bit_cast<uint32_t>(x); }
float float_of(uint32_t u) { return std::bit_cast<float>(u); }

// Round to nearest even by looking at the 16 bits that are dropped. NaNs are the caller's.
uint16_t reference_bf16(float x) {
  const uint32_t u = bits_of(x);
  uint32_t kept = u >> 16;
  const uint32_t dropped = u & 0xffffu;
  if (dropped > 0x8000u || (dropped == 0x8000u && (kept & 1u))) ++kept;
  return static_cast<uint16_t>(kept);
}
float reference_round(float x) { return float_of(static_cast<uint32_t>(reference_bf16(x)) << 16); }

TEST(Bf16Rounding, TiesToEvenInfNanAndDenormals) {
  const struct {
    uint32_t in;
    uint16_t out;
  } cases[] = {
      {0x3f800000, 0x3f80},  // 1
      {0x3f808000, 0x3f80},  // 1 + 2^-8: a tie, 0x3f80 is even
      {0x3f818000, 0x3f82},  // a tie above an odd value rounds up to the even one
      {0x3f807fff, 0x3f80},  // just below the tie
      {0x3f808001, 0x3f81},  // just above it
      {0xbf808000, 0xbf80},  // -(1 + 2^-8)
      {0x3f7fffff, 0x3f80},  // carries into the exponent
      {0x7f7f7fff, 0x7f7f},  // the largest bfloat16 stays
      {0x7f7fffff, 0x7f80},  // the largest float rounds to Inf
      {0x7f800000, 0x7f80},  // Inf
      {0xff800000, 0xff80},  // -Inf
      {0x00000000, 0x0000},  // 0
      {0x80000000, 0x8000},  // -0
      {0x00000001, 0x0000},  // the smallest denormal rounds to 0, not flushed by rule
      {0x00008000, 0x0000},  // a denormal tie to even (0)
      {0x00018000, 0x0002},  // a denormal tie to even (2)
      {0x00010001, 0x0001},  // a denormal kept, not flushed
      {0x807fffff, 0x8080},  // the largest denormal rounds up to the smallest normal
  };
  for (const auto& c : cases) {
    EXPECT_EQ(bf16_bits(float_of(c.in)), c.out) << std::hex << c.in;
    EXPECT_EQ(bits_of(round_to_bf16(float_of(c.in))), static_cast<uint32_t>(c.out) << 16);
  }
  // NaNs stay NaNs with their sign, including one whose payload lies only in the dropped half.
  for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu}) {
    const float rounded = round_to_bf16(float_of(nan));
    EXPECT_TRUE(std::isnan(rounded)) << std::hex << nan;
    EXPECT_EQ(std::signbit(rounded), (nan >> 31) != 0) << std::hex << nan;
  }
  // Random bit patterns of every class against the independent rounding.
  const uint64_t key = random_key(14, RandomPurpose::Init);
  for (uint64_t i = 0; i < 200000; ++i) {
    const uint32_t u = philox4x32(key, counter_of(1, i))[0];
    if (std::isnan(float_of(u))) continue;
    ASSERT_EQ(bf16_bits(float_of(u)), reference_bf16(float_of(u))) << std::hex << u;
  }
}

// One product's arguments; a, b, c are the matrices as stored (with their padding).
struct Product {
  bool trans_a, trans_b;
  int64_t M, N, K, lda, ldb, ldc;
  float alpha, beta;
  std::vector<float> a, b, c;
};

Product random_product(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
                       uint64_t seed) {
  const int64_t pad = 3;  // every ld wider than its matrix
  Product p{ta,    tb,   M,  N,  K, (ta ? M : K) + pad, (tb ? K : N) + pad, N + pad,
            alpha, beta, {}, {}, {}};
  p.a = testing::random_vector((ta ? K : M) * p.lda, seed);
  p.b = testing::random_vector((tb ? N : K) * p.ldb, seed + 1);
  p.c = testing::random_vector(M * p.ldc, seed + 2);
  return p;
}

std::vector<float> run(const Product& p, MatmulPrecision precision) {
  std::vector<float> c = p.c;
  gemm(precision, p.trans_a, p.trans_b, p.M, p.N, p.K, p.alpha, p.a.data(), p.lda, p.b.data(),
       p.ldb, p.beta, c.data(), p.ldc);
  return c;
}

// Expects c (as gemm left it) to be the product of the bf16-rounded operands, computed in double,
// within the float32 accumulation bound: K products summed in any order with unit roundoff
// u = 2^-24 err by at most (K-1)·u·Σ|a||b| (products of two bfloat16 are exact in float32); the
// alpha scaling, the beta·C term and their sum add three more roundings:
//   |c - exact| ≤ (K + 3)·2^-24·(|alpha|·Σ_k |a_ik||b_kj| + |beta·C_ij|).
// Padding columns of C must be untouched.
void expect_rounded_product(const Product& p, const std::vector<float>& c) {
  for (int64_t i = 0; i < p.M; ++i)
    for (int64_t j = 0; j < p.N; ++j) {
      double sum = 0, magnitude = 0;
      for (int64_t k = 0; k < p.K; ++k) {
        const double a = reference_round(p.trans_a ? p.a[k * p.lda + i] : p.a[i * p.lda + k]);
        const double b = reference_round(p.trans_b ? p.b[j * p.ldb + k] : p.b[k * p.ldb + j]);
        sum += a * b;
        magnitude += std::fabs(a * b);
      }
      const double old = p.c[i * p.ldc + j];
      const double expected = p.alpha * sum + p.beta * old;
      const double bound = (p.K + 3) * std::ldexp(1.0, -24) *
                           (std::fabs(p.alpha) * magnitude + std::fabs(p.beta * old));
      ASSERT_LE(std::fabs(c[i * p.ldc + j] - expected), bound)
          << "ta " << p.trans_a << " tb " << p.trans_b << " " << p.M << "x" << p.N << "x" << p.K
          << " alpha " << p.alpha << " beta " << p.beta << " at " << i << "," << j;
    }
  for (int64_t i = 0; i < p.M; ++i)
    for (int64_t j = p.N; j < p.ldc; ++j) ASSERT_EQ(c[i * p.ldc + j], p.c[i * p.ldc + j]);
}

// Shapes: a single element and 33×40×50 (the sgemm path for small products), the attention's
// per-block product 16×144×64 (at ctest's one thread) and 300×257×129, odd enough for ragged
// blocks (oneDNN's matmul where bf16 runs natively). (K = 0 is left out: dnnl_sgemm then leaves C
// untouched where BLAS would scale it by beta, and bf16 does what fp32 does.)
TEST(Bf16Gemm, MatchesRoundedReferenceForTransposesStridesAlphaBeta) {
  const int64_t shapes[][3] = {{1, 1, 1}, {33, 40, 50}, {16, 144, 64}, {300, 257, 129}};
  uint64_t seed = 100;
  for (const auto& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (float alpha : {1.0f, -0.375f})
          for (float beta : {0.0f, 1.0f, 0.5f}) {
            const Product p = random_product(ta, tb, s[0], s[1], s[2], alpha, beta, seed += 3);
            expect_rounded_product(p, run(p, MatmulPrecision::Bf16));
          }
}

// gemm_rounded on operands rounded beforehand (A, B or both) gives gemm's bits, on both paths (the
// shapes above), every transpose and ld, alpha and beta; at fp32 it is gemm.
TEST(Bf16Gemm, RoundedOperandsEqualTheRoundingPathBitForBit) {
  const int64_t shapes[][3] = {{1, 1, 1}, {33, 40, 50}, {16, 144, 64}, {300, 257, 129}};
  uint64_t seed = 500;
  for (const auto& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (float beta : {0.0f, 0.5f})
          for (int rounded = 1; rounded < 4; ++rounded) {  // 1: A, 2: B, 3: both
            const bool a_rounded = rounded & 1, b_rounded = rounded & 2;
            Product p = random_product(ta, tb, s[0], s[1], s[2], -0.375f, beta, seed += 3);
            for (const MatmulPrecision precision : {MatmulPrecision::Fp32, MatmulPrecision::Bf16}) {
              if (precision == MatmulPrecision::Bf16) {
                if (a_rounded)
                  for (float& x : p.a) x = reference_round(x);
                if (b_rounded)
                  for (float& x : p.b) x = reference_round(x);
              }
              const std::vector<float> expected = run(p, precision);
              std::vector<float> c = p.c;
              const MatmulPrecisionScope scope(precision);
              gemm_rounded(a_rounded, b_rounded, p.trans_a, p.trans_b, p.M, p.N, p.K, p.alpha,
                           p.a.data(), p.lda, p.b.data(), p.ldb, p.beta, c.data(), p.ldc);
              EXPECT_EQ(std::memcmp(c.data(), expected.data(), c.size() * sizeof(float)), 0)
                  << enum_name(precision) << " rounded " << rounded << " ta " << ta << " tb " << tb
                  << " " << s[0] << "x" << s[1] << "x" << s[2] << " beta " << beta;
            }
          }
}

// gemm_bf16_copies with A's, B's or both bf16 copies (bf16_copy of the operand as stored) gives
// gemm's bf16 bits, on both paths, every transpose and ld; the float32 pointer of a given copy is
// not read (null here).
TEST(Bf16Gemm, GivenCopiesEqualTheRoundingPathBitForBit) {
  const int64_t shapes[][3] = {{1, 1, 1}, {33, 40, 50}, {16, 144, 64}, {300, 257, 129}};
  uint64_t seed = 900;
  for (const auto& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const Product p = random_product(ta, tb, s[0], s[1], s[2], -0.375f, 0.5f, seed += 3);
        const std::vector<float> expected = run(p, MatmulPrecision::Bf16);
        // As stored: A is [M,K] or [K,M] (trans_a), B [K,N] or [N,K].
        const int64_t a_rows = ta ? p.K : p.M, a_cols = ta ? p.M : p.K;
        const int64_t b_rows = tb ? p.N : p.K, b_cols = tb ? p.K : p.N;
        std::vector<uint16_t> a16(a_rows * a_cols), b16(b_rows * b_cols);
        bf16_copy(a16.data(), p.a.data(), a_rows, a_cols, p.lda);
        bf16_copy(b16.data(), p.b.data(), b_rows, b_cols, p.ldb);
        for (int given = 1; given < 4; ++given) {  // 1: A's copy, 2: B's, 3: both
          const bool a_given = given & 1, b_given = given & 2;
          std::vector<float> c = p.c;
          gemm_bf16_copies(p.trans_a, p.trans_b, p.M, p.N, p.K, p.alpha,
                           a_given ? nullptr : p.a.data(), p.lda, a_given ? a16.data() : nullptr,
                           b_given ? nullptr : p.b.data(), p.ldb, b_given ? b16.data() : nullptr,
                           p.beta, c.data(), p.ldc);
          EXPECT_EQ(std::memcmp(c.data(), expected.data(), c.size() * sizeof(float)), 0)
              << "given " << given << " ta " << ta << " tb " << tb << " " << s[0] << "x" << s[1]
              << "x" << s[2];
        }
      }
}

// Inside a WeightCopiesScope, a product whose A or B is one of the scope's weights gives the bits
// it gives outside, for every transpose (a transposed weight is copied transposed and multiplied
// plain), a column prefix (ld wider than the matrix, as MatFormer's w1) and beta; and the copy is
// made once: a weight written inside the scope (which the trainer never does) is not seen, while
// an operand that is not a weight is read afresh. Shapes on the matmul path and one on sgemm's.
TEST(Bf16Gemm, WeightCopiesGiveTheSameBits) {
  const int64_t shapes[][3] = {{300, 257, 129}, {512, 1024, 256}, {33, 40, 50}};
  uint64_t seed = 1300;
  const MatmulPrecisionScope bf16(MatmulPrecision::Bf16);
  for (const auto& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (float beta : {0.0f, 0.5f})
          for (int weight = 1; weight < 3; ++weight) {  // 1: A is the weight, 2: B
            Product p = random_product(ta, tb, s[0], s[1], s[2], -0.375f, beta, seed += 3);
            const std::vector<float> expected = run(p, MatmulPrecision::Bf16);
            std::vector<float>& w = weight == 1 ? p.a : p.b;
            std::vector<float>& other = weight == 1 ? p.b : p.a;
            const std::string what = "ta " + std::to_string(ta) + " tb " + std::to_string(tb) +
                                     " " + std::to_string(s[0]) + "x" + std::to_string(s[1]) + "x" +
                                     std::to_string(s[2]) + " beta " + std::to_string(beta) +
                                     " weight " + std::to_string(weight);
            const WeightCopiesScope copies({{w.data(), static_cast<int64_t>(w.size())}});
            for (int call = 0; call < 2; ++call) {  // the copy's first use, then its reuse
              const std::vector<float> c = run(p, MatmulPrecision::Bf16);
              EXPECT_EQ(std::memcmp(c.data(), expected.data(), c.size() * sizeof(float)), 0)
                  << what << " call " << call;
            }
            if (!bf16_matmul_supported() ||
                s[0] * s[1] * s[2] < (int64_t{1} << 19) * omp_get_max_threads())
              continue;  // the sgemm path rounds per product, as outside a scope
            for (float& x : w) x = 2.0f * x + 1.0f;  // unseen: the copy is the step's
            std::vector<float> c = run(p, MatmulPrecision::Bf16);
            EXPECT_EQ(std::memcmp(c.data(), expected.data(), c.size() * sizeof(float)), 0) << what;
            for (float& x : other) x = 2.0f * x + 1.0f;  // seen: not a weight
            c = run(p, MatmulPrecision::Bf16);
            EXPECT_NE(std::memcmp(c.data(), expected.data(), c.size() * sizeof(float)), 0) << what;
          }
}

// count_gemm_time: each call counted once with its 2·M·N·K, at either precision and through every
// entry point (the bf16 path's inner sgemm over rounded operands is not a second call), nothing
// while off, and the totals restart when it is turned on.
TEST(GemmTime, CountsEachOutermostCallOnce) {
  Product p = random_product(false, true, 33, 40, 50, 1.0f, 0.0f, 77);
  const double flops = 2.0 * 33 * 40 * 50;
  count_gemm_time(true);
  run(p, MatmulPrecision::Fp32);
  run(p, MatmulPrecision::Bf16);  // below the matmul bound: rounded operands through sgemm
  std::vector<float> c = p.c;
  gemm_rounded(false, false, false, true, p.M, p.N, p.K, 1.0f, p.a.data(), p.lda, p.b.data(), p.ldb,
               0.0f, c.data(), p.ldc);
  GemmTotals totals = gemm_totals();
  EXPECT_EQ(totals.calls, 3);
  EXPECT_EQ(totals.flops, 3 * flops);
  EXPECT_GT(totals.core_seconds, 0.0);
  count_gemm_time(false);
  run(p, MatmulPrecision::Fp32);
  EXPECT_EQ(gemm_totals().calls, 3);  // off: not counted, and the totals stay readable
  count_gemm_time(true);
  EXPECT_EQ(gemm_totals().calls, 0);
  count_gemm_time(false);
}

// gemm_bf16_given (both operands as bf16 copies, the matmul from 2^15 multiply-adds per thread
// on) is the product of the rounded operands within the accumulation bound, on both paths (3×5×7
// below the bound, the attention's 64×191×64 and 191×64×64 blocks and 300×257×129 above it),
// every transpose, and gives the same bits when called again.
TEST(Bf16Gemm, GivenCopiesMatchRoundedReferenceAndRepeat) {
  const int64_t shapes[][3] = {{3, 5, 7}, {64, 191, 64}, {191, 64, 64}, {300, 257, 129}};
  uint64_t seed = 1300;
  for (const auto& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const Product p = random_product(ta, tb, s[0], s[1], s[2], -0.375f, 0.5f, seed += 3);
        const int64_t a_rows = ta ? p.K : p.M, a_cols = ta ? p.M : p.K;
        const int64_t b_rows = tb ? p.N : p.K, b_cols = tb ? p.K : p.N;
        std::vector<uint16_t> a16(a_rows * a_cols), b16(b_rows * b_cols);
        bf16_copy(a16.data(), p.a.data(), a_rows, a_cols, p.lda);
        bf16_copy(b16.data(), p.b.data(), b_rows, b_cols, p.ldb);
        auto run_given = [&] {
          std::vector<float> c = p.c;
          gemm_bf16_given(p.trans_a, p.trans_b, p.M, p.N, p.K, p.alpha, a16.data(), b16.data(),
                          p.beta, c.data(), p.ldc);
          return c;
        };
        const std::vector<float> c = run_given();
        expect_rounded_product(p, c);
        EXPECT_EQ(run_given(), c) << "ta " << ta << " tb " << tb << " " << s[0] << "x" << s[1];
      }
}

// Operands whose float32 product is far from their bf16 product: n×n×(8n) with
//   a = 1 + 2^-10   -> bf16 1           (below half a bfloat16 ulp, 2^-8)
//   b = 1 + 3·2^-9  -> bf16 1 + 2^-7    (above it)
// so every element of the bf16 product is exactly 8n·(1 + 2^-7) (each partial sum is a multiple
// of 2^-7 below 2^17), and the float32 one is 8n·(1 + 2^-10)(1 + 3·2^-9), 0.5 away at n = 64
// against an accumulation bound of 0.016.
Product rounding_probe(int64_t n) {
  const int64_t K = 8 * n;
  return Product{false,
                 false,
                 n,
                 n,
                 K,
                 K,
                 n,
                 n,
                 1.0f,
                 0.0f,
                 std::vector<float>(n * K, 1.0f + std::ldexp(1.0f, -10)),
                 std::vector<float>(K * n, 1.0f + 3 * std::ldexp(1.0f, -9)),
                 std::vector<float>(n * n, -1.0f)};
}
float rounded_probe_value(int64_t n) { return 8.0f * n * (1.0f + std::ldexp(1.0f, -7)); }

// On both paths: 64×64×512 (oneDNN's matmul where supported) and 8×8×64 (sgemm).
TEST(Bf16Gemm, OperandsAreRoundedNotJustTheResult) {
  for (const int64_t n : {64, 8}) {
    const Product p = rounding_probe(n);
    const std::vector<float> bf16 = run(p, MatmulPrecision::Bf16);
    const std::vector<float> fp32 = run(p, MatmulPrecision::Fp32);
    for (int64_t i = 0; i < n * n; ++i) {
      ASSERT_EQ(bf16[i], rounded_probe_value(n)) << n << " at " << i;
      ASSERT_GT(std::fabs(fp32[i] - rounded_probe_value(n)), n / 256.0f) << n << " at " << i;
    }
  }
}

// The plain gemm follows the process-wide precision, on OpenMP worker threads too; fp32 (the
// default, and again once the scope ends) is the sgemm of old, bit for bit.
TEST(Bf16Gemm, ProcessWidePrecisionReachesWorkerThreads) {
  EXPECT_EQ(matmul_precision(), MatmulPrecision::Fp32);
  for (const int64_t n : {16, 64}) {  // both paths
    const Product p = rounding_probe(n);
    auto plain = [&p] {
      std::vector<float> c = p.c;
      gemm(p.trans_a, p.trans_b, p.M, p.N, p.K, p.alpha, p.a.data(), p.lda, p.b.data(), p.ldb,
           p.beta, c.data(), p.ldc);
      return c;
    };
    const std::vector<float> fp32 = run(p, MatmulPrecision::Fp32);
    EXPECT_EQ(plain(), fp32);
    {
      MatmulPrecisionScope scope(MatmulPrecision::Bf16);
      EXPECT_EQ(matmul_precision(), MatmulPrecision::Bf16);
      std::vector<std::vector<float>> on_thread(3);
#pragma omp parallel for num_threads(3)
      for (int t = 0; t < 3; ++t) on_thread[t] = plain();
      for (const auto& c : on_thread)
        EXPECT_EQ(c, std::vector<float>(c.size(), rounded_probe_value(n)));
    }
    EXPECT_EQ(matmul_precision(), MatmulPrecision::Fp32);
    EXPECT_EQ(plain(), fp32);
  }
}

// The same call twice gives the same bits, on both paths.
TEST(Bf16Gemm, RepeatedCallIsBitIdentical) {
  for (const int64_t n : {300, 16}) {
    const Product p = random_product(true, false, n, n - 13, n + 5, 0.5f, 1.0f, 11);
    const std::vector<float> first = run(p, MatmulPrecision::Bf16);
    const std::vector<float> second = run(p, MatmulPrecision::Bf16);
    EXPECT_EQ(std::memcmp(first.data(), second.data(), first.size() * sizeof(float)), 0) << n;
  }
}

TEST(Bf16Gemm, PrecisionSpellings) {
  MatmulPrecision precision = MatmulPrecision::Fp32;
  ASSERT_TRUE(parse_enum("bf16", precision));
  EXPECT_EQ(precision, MatmulPrecision::Bf16);
  EXPECT_STREQ(enum_name(MatmulPrecision::Fp32), "fp32");
  EXPECT_FALSE(parse_enum("fp16", precision));
}

// Whether this machine runs bf16 natively is its own business; a refusal must say why.
TEST(Bf16Gemm, SupportQueryGivesAReason) {
  std::string reason;
  if (bf16_matmul_supported(&reason)) {
    EXPECT_TRUE(reason.empty());
    GTEST_SKIP() << "bf16 products run natively here (" << gemm_library() << ")";
  }
  EXPECT_FALSE(reason.empty());
}

}  // namespace
}  // namespace hg
