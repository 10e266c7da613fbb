#include <gtest/gtest.h>

#include <vector>

#include "core/bf16.h"
#include "layers/dconv.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::dot;
using testing::expect_gradients_match;
using testing::random_vector;

TEST(DConv, TapsAreCausalAndRestartAtEachSequence) {
  // C = 2; channel 0 taps (1, 10, 100), channel 1 taps (0.5, 1/6, 1/6) (the init values).
  const int64_t B = 2, n = 4;
  const int C = 2;
  std::vector<float> taps = {1, 0.5f, 10, 1.0f / 6, 100, 1.0f / 6};
  std::vector<float> z(B * n * C);
  for (int64_t bt = 0; bt < B * n; ++bt) {
    z[bt * C + 0] = float(bt + 1);  // sequences 1 2 3 4 | 5 6 7 8
    z[bt * C + 1] = 6.0f;
  }
  std::vector<float> y(B * n * C);
  dconv_forward(y.data(), z.data(), taps.data(), B, n, C, C);
  const float want0[] = {1, 12, 123, 234, 5, 56, 567, 678};
  for (int64_t bt = 0; bt < B * n; ++bt) EXPECT_FLOAT_EQ(y[bt * C], want0[bt]) << bt;
  const float want1[] = {3, 4, 5, 5};  // 0.5·6, +1, +1, then steady
  for (int64_t bt = 0; bt < B * n; ++bt) EXPECT_FLOAT_EQ(y[bt * C + 1], want1[bt % n]) << bt;
}

void check_dconv_gradients(int64_t B, int64_t n, int C) {
  auto z = random_vector(B * n * C, 1), taps = random_vector(3 * C, 2),
       R = random_vector(B * n * C, 3);
  std::vector<float> y(B * n * C);
  auto loss = [&] {
    dconv_forward(y.data(), z.data(), taps.data(), B, n, C, C);
    return dot(y.data(), R.data(), B * n * C);
  };
  loss();
  std::vector<float> dz(B * n * C, 5.0f), dtaps(3 * C, 0.0f);
  dconv_backward(dz.data(), dtaps.data(), R.data(), z.data(), taps.data(), B, n, C, C);
  EXPECT_EQ(expect_gradients_match("dz", loss, z.data(), dz.data(), B * n * C, {.max_checks = 200}),
            0);
  EXPECT_EQ(expect_gradients_match("dtaps", loss, taps.data(), dtaps.data(), 3 * C), 0);
  // Accumulation of the taps' gradient.
  auto once = dtaps;
  dconv_backward(dz.data(), dtaps.data(), R.data(), z.data(), taps.data(), B, n, C, C);
  for (int i = 0; i < 3 * C; ++i) EXPECT_FLOAT_EQ(dtaps[i], 2 * once[i]);
}

TEST(DConv, GradientsMatchFiniteDifferences) { check_dconv_gradients(2, 5, 3); }
TEST(DConv, GradientsAcrossChannelBlocks) { check_dconv_gradients(3, 4, 70); }
TEST(DConv, ShortSequences) {
  check_dconv_gradients(3, 1, 4);
  check_dconv_gradients(2, 2, 4);
}

// Taps [3, ldt] with ldt > C (the heads a MatFormer sub-model runs, §9.6): the first C columns
// give the bits of contiguous [3, C] taps, and the gradient's other columns are not written.
TEST(DConv, TapsRowStrideUsesTheFirstColumnsOnly) {
  const int64_t B = 2, n = 5, ldt = 11;
  const int C = 4;
  const auto z = random_vector(B * n * C, 1), wide = random_vector(3 * ldt, 2),
             R = random_vector(B * n * C, 3), dwide0 = random_vector(3 * ldt, 4);
  std::vector<float> narrow(3 * C), dnarrow(3 * C);
  for (int a = 0; a < 3; ++a)
    for (int c = 0; c < C; ++c) {
      narrow[a * C + c] = wide[a * ldt + c];
      dnarrow[a * C + c] = dwide0[a * ldt + c];
    }
  std::vector<float> y(B * n * C), want_y(B * n * C), dz(B * n * C), want_dz(B * n * C);
  dconv_forward(y.data(), z.data(), wide.data(), B, n, C, ldt);
  dconv_forward(want_y.data(), z.data(), narrow.data(), B, n, C, C);
  EXPECT_EQ(y, want_y);
  std::vector<float> dwide = dwide0;
  dconv_backward(dz.data(), dwide.data(), R.data(), z.data(), wide.data(), B, n, C, ldt);
  dconv_backward(want_dz.data(), dnarrow.data(), R.data(), z.data(), narrow.data(), B, n, C, C);
  EXPECT_EQ(dz, want_dz);
  for (int a = 0; a < 3; ++a)
    for (int64_t c = 0; c < ldt; ++c)
      EXPECT_EQ(dwide[a * ldt + c], c < C ? dnarrow[a * C + c] : dwide0[a * ldt + c])
          << "tap " << a << " column " << c;
}

// At train.precision bf16 the CPU attention takes the input gradient as bfloat16 alone: it must be
// the rounding of the float32 backward's, with the same tap gradients (rows in several chunks).
TEST(DConv, Bf16BackwardIsTheRoundedFloatBackward) {
  const int64_t B = 3, n = 40, ldt = 9;
  const int C = 7;
  const auto z = random_vector(B * n * C, 11), taps = random_vector(3 * ldt, 12),
             R = random_vector(B * n * C, 13), dtaps0 = random_vector(3 * ldt, 14);
  std::vector<float> dz(B * n * C), dtaps = dtaps0, dtaps16 = dtaps0;
  std::vector<uint16_t> dz16(B * n * C);
  dconv_backward(dz.data(), dtaps.data(), R.data(), z.data(), taps.data(), B, n, C, ldt);
  dconv_backward_bf16(dz16.data(), dtaps16.data(), R.data(), z.data(), taps.data(), B, n, C, ldt);
  for (size_t i = 0; i < dz.size(); ++i) ASSERT_EQ(dz16[i], bf16_bits(dz[i])) << i;
  EXPECT_EQ(dtaps16, dtaps);
}

}  // namespace
}  // namespace hg
