#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "layers/rope.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::dot;
using testing::expect_gradients_match;
using testing::random_vector;

TEST(Rope, TableIsDoubleAnglesRoundedToFloat) {
  const int e = 8;
  RopeTable t = make_rope_table(50, e);
  ASSERT_EQ(t.cos.size(), 50u * 4);
  for (int64_t p : {0, 1, 7, 49})
    for (int i = 0; i < e / 2; ++i) {
      double angle = double(p) * std::pow(10000.0, -2.0 * i / e);
      EXPECT_EQ(t.cos[p * 4 + i], float(std::cos(angle))) << p << "," << i;
      EXPECT_EQ(t.sin[p * 4 + i], float(std::sin(angle))) << p << "," << i;
    }
  EXPECT_EQ(t.cos[0], 1.0f);
  EXPECT_EQ(t.sin[0], 0.0f);
  EXPECT_THROW(make_rope_table(4, 7), UsageError);
}

TEST(Rope, RotatesPairsByPositionTimesFrequency) {
  // heads = 2, e = 4: pair 0 turns by p, pair 1 by p/100.
  const int64_t B = 1, n = 3;
  const int heads = 2, e = 4;
  RopeTable t = make_rope_table(n, e);
  std::vector<float> x(B * n * heads * e);
  for (int64_t p = 0; p < n; ++p)
    for (int h = 0; h < heads; ++h) {
      float* z = x.data() + (p * heads + h) * e;
      z[0] = 1;
      z[1] = 0;
      z[2] = 0;
      z[3] = float(h + 1);
    }
  rope_forward(x.data(), t, B, n, heads, e);
  for (int64_t p = 0; p < n; ++p)
    for (int h = 0; h < heads; ++h) {
      const float* z = x.data() + (p * heads + h) * e;
      double a0 = double(p), a1 = double(p) / 100.0;
      EXPECT_NEAR(z[0], std::cos(a0), 1e-6);
      EXPECT_NEAR(z[1], std::sin(a0), 1e-6);
      EXPECT_NEAR(z[2], -(h + 1) * std::sin(a1), 1e-6);
      EXPECT_NEAR(z[3], (h + 1) * std::cos(a1), 1e-6);
    }
}

TEST(Rope, PreservesNormsAndBackwardInvertsForward) {
  const int64_t B = 2, n = 9;
  const int heads = 3, e = 16;
  RopeTable t = make_rope_table(n + 5, e);  // a longer table is fine
  const int64_t N = B * n * heads * e;
  auto x = random_vector(N, 1);
  auto y = x;
  rope_forward(y.data(), t, B, n, heads, e);
  double max_change = 0;
  for (int64_t i = 0; i < N / 2; ++i) {
    double before = double(x[2 * i]) * x[2 * i] + double(x[2 * i + 1]) * x[2 * i + 1];
    double after = double(y[2 * i]) * y[2 * i] + double(y[2 * i + 1]) * y[2 * i + 1];
    EXPECT_NEAR(after, before, 1e-5 * (1 + before)) << i;
    max_change = std::max(max_change, std::fabs(double(y[2 * i]) - x[2 * i]));
  }
  EXPECT_GT(max_change, 0.1);  // it did rotate something
  rope_backward(y.data(), t, B, n, heads, e);
  for (int64_t i = 0; i < N; ++i) EXPECT_NEAR(y[i], x[i], 1e-6) << i;
}

// rope_forward_into (the attention's window operands, without a copy pass) gives the in-place
// forward's numbers bit for bit and leaves its input as it was.
TEST(Rope, ForwardIntoEqualsTheInPlaceForward) {
  const int64_t B = 2, n = 11;
  const int heads = 3, e = 16;
  const RopeTable t = make_rope_table(n, e);
  const auto x = random_vector(B * n * heads * e, 7);
  auto in_place = x;
  rope_forward(in_place.data(), t, B, n, heads, e);
  std::vector<float> into(x.size(), -1.0f);
  const auto input = x;
  rope_forward_into(into.data(), input.data(), t, B, n, heads, e);
  EXPECT_EQ(into, in_place);
  EXPECT_EQ(input, x);
  EXPECT_NE(into, x);
}

TEST(Rope, ScoresDependOnlyOnRelativePosition) {
  const int e = 8;
  RopeTable t = make_rope_table(40, e);
  auto q = random_vector(e, 2), k = random_vector(e, 3);
  auto rotated_at = [&](const std::vector<float>& v, int64_t p) {
    std::vector<float> seq(40 * e, 0.0f);
    std::copy(v.begin(), v.end(), seq.begin() + p * e);
    rope_forward(seq.data(), t, 1, 40, 1, e);
    return std::vector<float>(seq.begin() + p * e, seq.begin() + p * e + e);
  };
  double s1 = dot(rotated_at(q, 10).data(), rotated_at(k, 7).data(), e);
  double s2 = dot(rotated_at(q, 33).data(), rotated_at(k, 30).data(), e);
  double s3 = dot(rotated_at(q, 33).data(), rotated_at(k, 7).data(), e);
  EXPECT_NEAR(s1, s2, 1e-5);
  EXPECT_GT(std::fabs(s1 - s3), 1e-3);
}

TEST(Rope, GradientsMatchFiniteDifferences) {
  const int64_t B = 2, n = 5;
  const int heads = 2, e = 6;
  RopeTable t = make_rope_table(n, e);
  const int64_t N = B * n * heads * e;
  auto x = random_vector(N, 4), R = random_vector(N, 5);
  std::vector<float> y(N);
  auto loss = [&] {
    y = x;
    rope_forward(y.data(), t, B, n, heads, e);
    return dot(y.data(), R.data(), N);
  };
  std::vector<float> dx = R;
  rope_backward(dx.data(), t, B, n, heads, e);
  EXPECT_EQ(expect_gradients_match("dx", loss, x.data(), dx.data(), N, {.max_checks = 120}), 0);
}

TEST(Rope, RejectsMismatchedTable) {
  RopeTable t = make_rope_table(4, 8);
  std::vector<float> x(5 * 8);
  EXPECT_THROW(rope_forward(x.data(), t, 1, 5, 1, 8), UsageError);
  EXPECT_THROW(rope_forward(x.data(), t, 1, 4, 2, 4), UsageError);
}

}  // namespace
}  // namespace hg
