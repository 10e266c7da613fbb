// Shortening and upsampling (layers/resample.h) on every backend (tests/support/backends.h): small
// exact cases and finite differences, on device buffers through backend_for(device).
#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"
#include "tests/support/backends.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::dot;
using testing::expect_gradients_match;
using testing::random_vector;
using testing::to_host;

class Resample : public testing::OnEveryBackend {
 protected:
  // out = f(inp) on device buffers; the gradient of sum(out·R) w.r.t. inp from `backward`,
  // checked by finite differences (the host copy of inp is perturbed and restaged).
  template <class Forward, class Backward>
  void check_input_gradient(const char* what, int64_t in_size, int64_t out_size, Forward forward,
                            Backward backward) {
    auto x = random_vector(in_size, 1), R = random_vector(out_size, 2);
    Tensor dev_x = on_device(x), dev_R = on_device(R), y = zeros_on_device(out_size),
           dx = on_device(std::vector<float>(in_size, 42.0f));
    auto loss = [&] {
      dev_x.copy_from_host(x.data());
      forward(y.data(), dev_x.data());
      return dot(to_host(y).data(), R.data(), out_size);
    };
    backward(dx.data(), dev_R.data());
    EXPECT_EQ(expect_gradients_match(what, loss, x.data(), to_host(dx).data(), in_size,
                                     {.max_checks = 200}),
              0);
  }
  // The parameterised layers (pool_linear, upsample_linear): dx, dW, db of sum(y·R) by finite
  // differences. forward(y, x, W, b) and backward(dx, dW, db, dy, x, W) take device pointers.
  template <class Forward, class Backward>
  void check_linear_gradients(std::vector<float> x, std::vector<float> W, std::vector<float> b,
                              const std::vector<float>& R, Forward forward, Backward backward) {
    Tensor dev_x = on_device(x), dev_W = on_device(W), dev_b = on_device(b), dev_R = on_device(R),
           y = zeros_on_device(int64_t(R.size()));
    auto loss = [&] {
      dev_x.copy_from_host(x.data());
      dev_W.copy_from_host(W.data());
      dev_b.copy_from_host(b.data());
      forward(y.data(), dev_x.data(), dev_W.data(), dev_b.data());
      return dot(to_host(y).data(), R.data(), int64_t(R.size()));
    };
    Tensor dx = on_device(std::vector<float>(x.size(), 1.0f)),
           dW = zeros_on_device(int64_t(W.size())), db = zeros_on_device(int64_t(b.size()));
    backward(dx.data(), dW.data(), db.data(), dev_R.data(), dev_x.data(), dev_W.data());
    EXPECT_EQ(expect_gradients_match("dx", loss, x.data(), to_host(dx).data(), int64_t(x.size())),
              0);
    EXPECT_EQ(expect_gradients_match("dW", loss, W.data(), to_host(dW).data(), int64_t(W.size())),
              0);
    EXPECT_EQ(expect_gradients_match("db", loss, b.data(), to_host(db).data(), int64_t(b.size())),
              0);
  }
};
// One suite per layer, as before (ShiftRight.*/cpu, PoolLinear.*/cpu, ...).
class ShiftRight : public Resample {};
class PoolLinear : public Resample {};
class PoolAvg : public Resample {};
class UpsampleLinear : public Resample {};
class UpsampleRepeat : public Resample {};
HG_TEST_ON_EVERY_BACKEND(ShiftRight);
HG_TEST_ON_EVERY_BACKEND(PoolLinear);
HG_TEST_ON_EVERY_BACKEND(PoolAvg);
HG_TEST_ON_EVERY_BACKEND(UpsampleLinear);
HG_TEST_ON_EVERY_BACKEND(UpsampleRepeat);

TEST_P(ShiftRight, ForwardShiftsEachSequenceAndFillsZeros) {
  const int64_t B = 2, n = 4;
  const int d = 1;
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  Tensor dev_x = on_device(x), y = zeros_on_device(8);
  auto shifted = [&](int s) {
    backend().shift_right_forward(y.data(), dev_x.data(), B, n, d, s);
    return to_host(y);
  };
  EXPECT_EQ(shifted(0), x);
  EXPECT_EQ(shifted(1), (std::vector<float>{0, 1, 2, 3, 0, 5, 6, 7}));
  EXPECT_EQ(shifted(2), (std::vector<float>{0, 0, 1, 2, 0, 0, 5, 6}));
  backend().shift_right_backward(y.data(), dev_x.data(), B, n, d, 2);
  EXPECT_EQ(to_host(y), (std::vector<float>{3, 4, 0, 0, 7, 8, 0, 0}));
}

TEST_P(ShiftRight, GradientsMatchFiniteDifferences) {
  const int64_t B = 3, n = 5;
  const int d = 4;
  for (int s : {0, 1, 2}) {
    SCOPED_TRACE(s);
    check_input_gradient(
        "dx", B * n * d, B * n * d,
        [&](float* y, const float* x) { backend().shift_right_forward(y, x, B, n, d, s); },
        [&](float* dx, const float* dy) { backend().shift_right_backward(dx, dy, B, n, d, s); });
  }
}

TEST_P(PoolLinear, ConcatenatesPositionMajor) {
  // d = 2, k = 2: window rows (a0, a1), (b0, b1) -> concat (a0, a1, b0, b1).
  // W [4, 2]: output 0 = a1 (row 1 of W), output 1 = b0 (row 2 of W).
  const int64_t B = 1, n = 4;
  const int d = 2, k = 2;
  Tensor x = on_device({1, 2, 3, 4, 5, 6, 7, 8}), W = on_device({0, 0, 1, 0, 0, 1, 0, 0}),
         b = on_device({0.5f, -0.5f}), y = zeros_on_device(4);
  backend().pool_linear_forward(y.data(), x.data(), W.data(), b.data(), B, n, d, k);
  EXPECT_EQ(to_host(y), (std::vector<float>{2.5f, 2.5f, 6.5f, 6.5f}));
  EXPECT_THROW(backend().pool_linear_forward(y.data(), x.data(), W.data(), b.data(), B, 3, d, k),
               UsageError);
}

TEST_P(PoolLinear, GradientsMatchFiniteDifferences) {
  const int64_t B = 2, n = 6;
  const int d = 3, k = 3;
  check_linear_gradients(
      random_vector(B * n * d, 5), random_vector(k * d * d, 3), random_vector(d, 4),
      random_vector(B * (n / k) * d, 6),
      [&](float* y, const float* x, const float* W, const float* b) {
        backend().pool_linear_forward(y, x, W, b, B, n, d, k);
      },
      [&](float* dx, float* dW, float* db, const float* dy, const float* x, const float* W) {
        backend().pool_linear_backward(dx, dW, db, dy, x, W, B, n, d, k);
      });
}

TEST_P(PoolAvg, MeansWindowsWithinEachSequence) {
  const int64_t B = 2, n = 3;
  const int d = 2, k = 3;
  Tensor x = on_device({1, 10, 2, 20, 6, 60, 0, 0, 0, 3, 0, 0}), y = zeros_on_device(4);
  backend().pool_avg_forward(y.data(), x.data(), B, n, d, k);
  EXPECT_EQ(to_host(y), (std::vector<float>{3, 30, 0, 1}));
}

TEST_P(PoolAvg, GradientsMatchFiniteDifferences) {
  const int64_t B = 2, n = 6;
  const int d = 3, k = 2;
  check_input_gradient(
      "dx", B * n * d, B * (n / k) * d,
      [&](float* y, const float* x) { backend().pool_avg_forward(y, x, B, n, d, k); },
      [&](float* dx, const float* dy) { backend().pool_avg_backward(dx, dy, B, n, d, k); });
}

TEST_P(UpsampleLinear, SplitsEachRowIntoKConsecutiveRows) {
  // d = 2, k = 2: W [2, 4] = identity-ish so row j (a, b) -> (a, b, 10a, 10b) + bias,
  // split into rows 2j = (a, b) + bias[0..1] and 2j+1 = (10a, 10b) + bias[2..3].
  const int64_t B = 1, m = 2;
  const int d = 2, k = 2;
  Tensor s = on_device({1, 2, 3, 4}), W = on_device({1, 0, 10, 0, 0, 1, 0, 10}),
         b = on_device({0, 0, 0.5f, 0.5f}), y = zeros_on_device(8);
  backend().upsample_linear_forward(y.data(), s.data(), W.data(), b.data(), B, m, d, k);
  EXPECT_EQ(to_host(y), (std::vector<float>{1, 2, 10.5f, 20.5f, 3, 4, 30.5f, 40.5f}));
}

TEST_P(UpsampleLinear, GradientsMatchFiniteDifferences) {
  const int64_t B = 2, m = 3;
  const int d = 3, k = 2;
  check_linear_gradients(
      random_vector(B * m * d, 9), random_vector(d * k * d, 7), random_vector(k * d, 8),
      random_vector(B * m * k * d, 10),
      [&](float* y, const float* x, const float* W, const float* b) {
        backend().upsample_linear_forward(y, x, W, b, B, m, d, k);
      },
      [&](float* dx, float* dW, float* db, const float* dy, const float* x, const float* W) {
        backend().upsample_linear_backward(dx, dW, db, dy, x, W, B, m, d, k);
      });
}

TEST_P(UpsampleRepeat, CopiesEachRowKTimes) {
  Tensor s = on_device({1, 2, 3, 4}), y = zeros_on_device(12);
  backend().upsample_repeat_forward(y.data(), s.data(), 2, 1, 2, 3);  // B 2, m 1, d 2, k 3
  EXPECT_EQ(to_host(y), (std::vector<float>{1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4}));
  Tensor dy = on_device({1, 2, 10, 20, 100, 200, 0, 0, 0, 0, 5, 5}), dx = zeros_on_device(4);
  backend().upsample_repeat_backward(dx.data(), dy.data(), 2, 1, 2, 3);
  EXPECT_EQ(to_host(dx), (std::vector<float>{111, 222, 5, 5}));
}

TEST_P(UpsampleRepeat, GradientsMatchFiniteDifferences) {
  const int64_t B = 2, m = 3;
  const int d = 4, k = 3;
  check_input_gradient(
      "dx", B * m * d, B * m * k * d,
      [&](float* y, const float* x) { backend().upsample_repeat_forward(y, x, B, m, d, k); },
      [&](float* dx, const float* dy) { backend().upsample_repeat_backward(dx, dy, B, m, d, k); });
}

}  // namespace
}  // namespace hg
