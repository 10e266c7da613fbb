#include <gtest/gtest.h>

#include <vector>

#include "layers/linear.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::dot;
using testing::expect_gradients_match;
using testing::random_vector;

TEST(Linear, ForwardIsRowVectorTimesInOutWeightPlusBias) {
  // x [1, 2] · W [2, 3] + b
  std::vector<float> x = {1, 2}, W = {1, 2, 3, 4, 5, 6}, b = {0.5f, 0, -1}, y(3);
  linear_forward(y.data(), x.data(), W.data(), b.data(), 1, 2, 3, 3);
  EXPECT_EQ(y, (std::vector<float>{9.5f, 12.0f, 14.0f}));
  linear_forward(y.data(), x.data(), W.data(), nullptr, 1, 2, 3, 3);
  EXPECT_EQ(y, (std::vector<float>{9.0f, 12.0f, 15.0f}));
  // Column prefix of width 2 of the same matrix (ldw 3).
  std::vector<float> y2(2);
  linear_forward(y2.data(), x.data(), W.data(), b.data(), 1, 2, 2, 3);
  EXPECT_EQ(y2, (std::vector<float>{9.5f, 12.0f}));
}

void check_linear_gradients(int64_t rows, int64_t in, int64_t out_dim, int64_t ldw,
                            bool with_bias) {
  auto x = random_vector(rows * in, 1), W = random_vector(in * ldw, 2), b = random_vector(ldw, 3);
  auto R = random_vector(rows * out_dim, 4);
  std::vector<float> y(rows * out_dim);
  float* bias = with_bias ? b.data() : nullptr;
  auto loss = [&] {
    linear_forward(y.data(), x.data(), W.data(), bias, rows, in, out_dim, ldw);
    return dot(y.data(), R.data(), rows * out_dim);
  };
  loss();
  const float sentinel = 0.0f;  // untouched entries must stay exactly as they were
  std::vector<float> dx(rows * in, 9.0f), dW(in * ldw, sentinel), db(ldw, sentinel);
  linear_backward(dx.data(), dW.data(), with_bias ? db.data() : nullptr, R.data(), x.data(),
                  W.data(), rows, in, out_dim, ldw);
  EXPECT_EQ(expect_gradients_match("dx", loss, x.data(), dx.data(), rows * in), 0);
  EXPECT_EQ(expect_gradients_match("dW", loss, W.data(), dW.data(), in * ldw), 0);
  if (with_bias) {
    EXPECT_EQ(expect_gradients_match("db", loss, b.data(), db.data(), ldw), 0);
  }
  for (int64_t i = 0; i < in; ++i)
    for (int64_t c = out_dim; c < ldw; ++c) EXPECT_EQ(dW[i * ldw + c], sentinel) << i << "," << c;
  for (int64_t c = out_dim; c < ldw; ++c) EXPECT_EQ(db[c], sentinel);
}

TEST(Linear, GradientsMatchFiniteDifferences) { check_linear_gradients(6, 5, 7, 7, true); }
TEST(Linear, GradientsWithoutBias) { check_linear_gradients(4, 3, 9, 9, false); }
TEST(Linear, ColumnPrefixOfWiderMatrix) { check_linear_gradients(5, 6, 4, 11, true); }
TEST(Linear, BiasGradientAcrossColumnBlocks) { check_linear_gradients(3, 2, 70, 80, true); }

TEST(Linear, BackwardAccumulatesParametersAndSkipsNullInputGradient) {
  const int64_t rows = 3, in = 4, out_dim = 5;
  auto x = random_vector(rows * in, 5), W = random_vector(in * out_dim, 6),
       dy = random_vector(rows * out_dim, 7);
  std::vector<float> dW(in * out_dim, 0.0f), db(out_dim, 0.0f);
  linear_backward(nullptr, dW.data(), db.data(), dy.data(), x.data(), W.data(), rows, in, out_dim,
                  out_dim);
  auto dW1 = dW, db1 = db;
  linear_backward(nullptr, dW.data(), db.data(), dy.data(), x.data(), W.data(), rows, in, out_dim,
                  out_dim);
  for (size_t i = 0; i < dW.size(); ++i) EXPECT_FLOAT_EQ(dW[i], 2 * dW1[i]);
  for (size_t i = 0; i < db.size(); ++i) EXPECT_FLOAT_EQ(db[i], 2 * db1[i]);
  // dW = xᵀ dy.
  for (int64_t i = 0; i < in; ++i)
    for (int64_t c = 0; c < out_dim; ++c) {
      double s = 0;
      for (int64_t r = 0; r < rows; ++r) s += double(x[r * in + i]) * dy[r * out_dim + c];
      EXPECT_NEAR(dW1[i * out_dim + c], s, 1e-5);
    }
}

}  // namespace
}  // namespace hg
