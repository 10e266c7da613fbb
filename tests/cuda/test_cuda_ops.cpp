#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/cuda/device.h"
#include "core/gemm.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

#define SKIP_WITHOUT_DEVICE()                                                   \
  do {                                                                          \
    std::string reason;                                                         \
    if (cuda::device_count(&reason) == 0) GTEST_SKIP() << "no CUDA device: " << reason; \
  } while (0)

TEST(CudaGemm, MatchesCpuGemm) {
  SKIP_WITHOUT_DEVICE();
  const int64_t M = 33, N = 17, K = 65;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      auto A = testing::random_vector(M * K, 1), B = testing::random_vector(K * N, 2);
      std::vector<float> expected(M * N), got(M * N);
      int64_t lda = ta ? M : K, ldb = tb ? K : N;
      gemm(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, expected.data(), N);
      float *dA = cuda::device_alloc(M * K), *dB = cuda::device_alloc(K * N), *dC = cuda::device_alloc(M * N);
      cuda::copy_to_device(dA, A.data(), M * K);
      cuda::copy_to_device(dB, B.data(), K * N);
      cuda::gemm(ta, tb, M, N, K, 1.0f, dA, lda, dB, ldb, 0.0f, dC, N);
      cuda::copy_to_host(got.data(), dC, M * N);
      for (int64_t i = 0; i < M * N; ++i) EXPECT_NEAR(got[i], expected[i], 1e-4);
      cuda::device_free(dA);
      cuda::device_free(dB);
      cuda::device_free(dC);
    }
}

}  // namespace
}  // namespace hg
