#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/bulk_memory.h"
#include "core/gemm.h"
#include "core/random.h"
#include "core/tensor.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

// Naive row-major reference for every transpose combination and leading dimensions.
TEST(Gemm, MatchesNaiveProductWithTransposesAndStrides) {
  const int64_t M = 7, N = 5, K = 9, pad = 3;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
      auto A = testing::random_vector((ta ? K : M) * lda, 1);
      auto B = testing::random_vector((tb ? N : K) * ldb, 2);
      auto C = testing::random_vector(M * ldc, 3);
      auto expected = C;
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double s = 0;
          for (int64_t k = 0; k < K; ++k)
            s += double(ta ? A[k * lda + i] : A[i * lda + k]) *
                 (tb ? B[j * ldb + k] : B[k * ldb + j]);
          expected[i * ldc + j] = float(0.5 * s + 2.0 * C[i * ldc + j]);
        }
      gemm(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 2.0f, C.data(), ldc);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j)
          EXPECT_NEAR(C[i * ldc + j], expected[i * ldc + j], 1e-4)
              << ta << tb << " " << i << "," << j;
    }
}

TEST(Random, PhiloxMatchesPublishedKnownAnswer) {
  // Random123 known-answer test philox4x32_10: counter and key all 0xffffffff... here we check
  // the all-zero vector: ctr = {0,0,0,0}, key = {0,0} -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8.
  PhiloxBlock r = philox4x32(0, {0, 0, 0, 0});
  EXPECT_EQ(r[0], 0x6627e8d5u);
  EXPECT_EQ(r[1], 0xe169c58du);
  EXPECT_EQ(r[2], 0xbc57ac4cu);
  EXPECT_EQ(r[3], 0x9b00dbd8u);
}

TEST(Random, NormalHasUnitMomentsAndDependsOnlyOnCounter) {
  uint64_t key = random_key(1234, RandomPurpose::Init);
  double sum = 0, sum2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    double z = normal_at(key, counter_of(7, i));
    sum += z;
    sum2 += z * z;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sum2 / n, 1.0, 0.01);
  EXPECT_EQ(normal_at(key, counter_of(7, 99)), normal_at(key, counter_of(7, 99)));
  EXPECT_NE(normal_at(key, counter_of(7, 99)), normal_at(key, counter_of(8, 99)));
  EXPECT_NE(random_key(1, RandomPurpose::Init), random_key(1, RandomPurpose::Dropout));
}

TEST(Tensor, CopyIsDeepAndResetZeroes) {
  Tensor a({2, 3});
  a[4] = 5.0f;
  Tensor b = a;
  b[4] = 1.0f;
  EXPECT_EQ(a[4], 5.0f);
  EXPECT_EQ(b.numel(), 6);
  b.reset({3});
  EXPECT_EQ(b[0], 0.0f);
  EXPECT_EQ(shape_string(a.shape()), "[2, 3]");
}

// Assigning into a tensor with room to spare skips the zeroing but must still copy every element
// and take the other's shape; a smaller copy leaves nothing of the old shape behind.
TEST(Tensor, AssignmentIntoALargerTensorCopiesExactly) {
  Tensor big({4, 5}), small({2, 3});
  big.fill(7.0f);
  for (int64_t i = 0; i < small.numel(); ++i) small[i] = static_cast<float>(i + 1);
  big = small;
  EXPECT_EQ(shape_string(big.shape()), "[2, 3]");
  ASSERT_EQ(big.numel(), 6);
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(big[i], static_cast<float>(i + 1));
}

// The threaded copy and zero (from 1 MiB on, in 256 KiB pieces): every byte, a ragged last
// piece, unaligned starts, and nothing past the end.
TEST(BulkMemory, CopyAndZeroCoverEveryByteAndNoMore) {
  for (const int64_t bytes : {int64_t{100}, int64_t{(1 << 20) + 3}, int64_t{(3 << 20) + 4097}}) {
    std::vector<unsigned char> src(bytes + 2), dst(bytes + 2, 0xAB);
    for (int64_t i = 0; i < bytes + 2; ++i) src[i] = static_cast<unsigned char>(i * 7 + 1);
    copy_bytes(dst.data() + 1, src.data() + 1, bytes);
    EXPECT_EQ(dst[0], 0xAB);
    EXPECT_EQ(dst[bytes + 1], 0xAB);
    for (int64_t i = 1; i <= bytes; ++i) ASSERT_EQ(dst[i], src[i]) << bytes << " at " << i;
    zero_bytes(dst.data() + 1, bytes);
    EXPECT_EQ(dst[0], 0xAB);
    EXPECT_EQ(dst[bytes + 1], 0xAB);
    for (int64_t i = 1; i <= bytes; ++i) ASSERT_EQ(dst[i], 0) << bytes << " at " << i;
  }
}

}  // namespace
}  // namespace hg
