#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"
#include "layers/resample.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::dot;
using testing::expect_gradients_match;
using testing::random_vector;

// out = f(inp); gradient of sum(out·R) w.r.t. inp from `backward`, checked by finite differences.
template <class Forward, class Backward>
void check_input_gradient(const char* what, int64_t in_size, int64_t out_size, Forward forward,
                          Backward backward) {
  auto x = random_vector(in_size, 1), R = random_vector(out_size, 2);
  std::vector<float> y(out_size), dx(in_size, 42.0f);
  auto loss = [&] {
    forward(y.data(), x.data());
    return dot(y.data(), R.data(), out_size);
  };
  backward(dx.data(), R.data());
  EXPECT_EQ(expect_gradients_match(what, loss, x.data(), dx.data(), in_size, {.max_checks = 200}),
            0);
}

TEST(ShiftRight, ForwardShiftsEachSequenceAndFillsZeros) {
  const int64_t B = 2, n = 4;
  const int d = 1;
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8}, y(8);
  shift_right_forward(y.data(), x.data(), B, n, d, 0);
  EXPECT_EQ(y, x);
  shift_right_forward(y.data(), x.data(), B, n, d, 1);
  EXPECT_EQ(y, (std::vector<float>{0, 1, 2, 3, 0, 5, 6, 7}));
  shift_right_forward(y.data(), x.data(), B, n, d, 2);
  EXPECT_EQ(y, (std::vector<float>{0, 0, 1, 2, 0, 0, 5, 6}));
  shift_right_backward(y.data(), x.data(), B, n, d, 2);
  EXPECT_EQ(y, (std::vector<float>{3, 4, 0, 0, 7, 8, 0, 0}));
}

TEST(ShiftRight, GradientsMatchFiniteDifferences) {
  const int64_t B = 3, n = 5;
  const int d = 4;
  for (int s : {0, 1, 2}) {
    SCOPED_TRACE(s);
    check_input_gradient(
        "dx", B * n * d, B * n * d,
        [&](float* y, const float* x) { shift_right_forward(y, x, B, n, d, s); },
        [&](float* dx, const float* dy) { shift_right_backward(dx, dy, B, n, d, s); });
  }
}

TEST(PoolLinear, ConcatenatesPositionMajor) {
  // d = 2, k = 2: window rows (a0, a1), (b0, b1) -> concat (a0, a1, b0, b1).
  // W [4, 2]: output 0 = a1 (row 1 of W), output 1 = b0 (row 2 of W).
  const int64_t B = 1, n = 4;
  const int d = 2, k = 2;
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<float> W = {0, 0, 1, 0, 0, 1, 0, 0}, b = {0.5f, -0.5f}, y(4);
  pool_linear_forward(y.data(), x.data(), W.data(), b.data(), B, n, d, k);
  EXPECT_EQ(y, (std::vector<float>{2.5f, 2.5f, 6.5f, 6.5f}));
  EXPECT_THROW(pool_linear_forward(y.data(), x.data(), W.data(), b.data(), B, 3, d, k), UsageError);
}

TEST(PoolLinear, GradientsMatchFiniteDifferences) {
  const int64_t B = 2, n = 6;
  const int d = 3, k = 3;
  auto W = random_vector(k * d * d, 3), b = random_vector(d, 4), x = random_vector(B * n * d, 5);
  auto R = random_vector(B * (n / k) * d, 6);
  std::vector<float> y(B * (n / k) * d);
  auto loss = [&] {
    pool_linear_forward(y.data(), x.data(), W.data(), b.data(), B, n, d, k);
    return dot(y.data(), R.data(), int64_t(y.size()));
  };
  std::vector<float> dx(x.size(), 1.0f), dW(W.size(), 0.0f), db(d, 0.0f);
  pool_linear_backward(dx.data(), dW.data(), db.data(), R.data(), x.data(), W.data(), B, n, d, k);
  EXPECT_EQ(expect_gradients_match("dx", loss, x.data(), dx.data(), int64_t(x.size())), 0);
  EXPECT_EQ(expect_gradients_match("dW", loss, W.data(), dW.data(), int64_t(W.size())), 0);
  EXPECT_EQ(expect_gradients_match("db", loss, b.data(), db.data(), d), 0);
}

TEST(PoolAvg, MeansWindowsWithinEachSequence) {
  const int64_t B = 2, n = 3;
  const int d = 2, k = 3;
  std::vector<float> x = {1, 10, 2, 20, 6, 60, 0, 0, 0, 3, 0, 0}, y(4);
  pool_avg_forward(y.data(), x.data(), B, n, d, k);
  EXPECT_EQ(y, (std::vector<float>{3, 30, 0, 1}));
}

TEST(PoolAvg, GradientsMatchFiniteDifferences) {
  const int64_t B = 2, n = 6;
  const int d = 3, k = 2;
  check_input_gradient(
      "dx", B * n * d, B * (n / k) * d,
      [&](float* y, const float* x) { pool_avg_forward(y, x, B, n, d, k); },
      [&](float* dx, const float* dy) { pool_avg_backward(dx, dy, B, n, d, k); });
}

TEST(UpsampleLinear, SplitsEachRowIntoKConsecutiveRows) {
  // d = 2, k = 2: W [2, 4] = identity-ish so row j (a, b) -> (a, b, 10a, 10b) + bias,
  // split into rows 2j = (a, b) + bias[0..1] and 2j+1 = (10a, 10b) + bias[2..3].
  const int64_t B = 1, m = 2;
  const int d = 2, k = 2;
  std::vector<float> s = {1, 2, 3, 4};
  std::vector<float> W = {1, 0, 10, 0, 0, 1, 0, 10}, b = {0, 0, 0.5f, 0.5f}, y(8);
  upsample_linear_forward(y.data(), s.data(), W.data(), b.data(), B, m, d, k);
  EXPECT_EQ(y, (std::vector<float>{1, 2, 10.5f, 20.5f, 3, 4, 30.5f, 40.5f}));
}

TEST(UpsampleLinear, GradientsMatchFiniteDifferences) {
  const int64_t B = 2, m = 3;
  const int d = 3, k = 2;
  auto W = random_vector(d * k * d, 7), b = random_vector(k * d, 8),
       x = random_vector(B * m * d, 9);
  auto R = random_vector(B * m * k * d, 10);
  std::vector<float> y(B * m * k * d);
  auto loss = [&] {
    upsample_linear_forward(y.data(), x.data(), W.data(), b.data(), B, m, d, k);
    return dot(y.data(), R.data(), int64_t(y.size()));
  };
  std::vector<float> dx(x.size(), 1.0f), dW(W.size(), 0.0f), db(b.size(), 0.0f);
  upsample_linear_backward(dx.data(), dW.data(), db.data(), R.data(), x.data(), W.data(), B, m, d,
                           k);
  EXPECT_EQ(expect_gradients_match("dx", loss, x.data(), dx.data(), int64_t(x.size())), 0);
  EXPECT_EQ(expect_gradients_match("dW", loss, W.data(), dW.data(), int64_t(W.size())), 0);
  EXPECT_EQ(expect_gradients_match("db", loss, b.data(), db.data(), int64_t(b.size())), 0);
}

TEST(UpsampleRepeat, CopiesEachRowKTimes) {
  std::vector<float> s = {1, 2, 3, 4}, y(12);
  upsample_repeat_forward(y.data(), s.data(), 2, 1, 2, 3);  // B = 2, m = 1, d = 2, k = 3
  EXPECT_EQ(y, (std::vector<float>{1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4}));
  std::vector<float> dy = {1, 2, 10, 20, 100, 200, 0, 0, 0, 0, 5, 5}, dx(4);
  upsample_repeat_backward(dx.data(), dy.data(), 2, 1, 2, 3);
  EXPECT_EQ(dx, (std::vector<float>{111, 222, 5, 5}));
}

TEST(UpsampleRepeat, GradientsMatchFiniteDifferences) {
  const int64_t B = 2, m = 3;
  const int d = 4, k = 3;
  check_input_gradient(
      "dx", B * m * d, B * m * k * d,
      [&](float* y, const float* x) { upsample_repeat_forward(y, x, B, m, d, k); },
      [&](float* dx, const float* dy) { upsample_repeat_backward(dx, dy, B, m, d, k); });
}

}  // namespace
}  // namespace hg
