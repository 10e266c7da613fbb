// The linear layer on every backend (tests/support/backends.h): exact small-integer products, the
// finite-difference gradients and accumulation, on device buffers through backend_for(device).
#include <gtest/gtest.h>

#include <vector>

#include "core/gemm.h"
#include "tests/support/backends.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::dot;
using testing::expect_gradients_match;
using testing::random_vector;
using testing::to_host;

class Linear : public testing::OnEveryBackend {
 protected:
  void check_gradients(int64_t rows, int64_t in, int64_t out_dim, int64_t ldw, bool with_bias);
};
HG_TEST_ON_EVERY_BACKEND(Linear);

// Small integers: every product and sum is exact whatever the summation order, so every backend
// gives these bits.
TEST_P(Linear, ForwardIsRowVectorTimesInOutWeightPlusBias) {
  // x [1, 2] · W [2, 3] + b
  Tensor x = on_device({1, 2}), W = on_device({1, 2, 3, 4, 5, 6}), b = on_device({0.5f, 0, -1}),
         y = zeros_on_device(3);
  backend().linear_forward(y.data(), x.data(), W.data(), b.data(), 1, 2, 3, 3);
  EXPECT_EQ(to_host(y), (std::vector<float>{9.5f, 12.0f, 14.0f}));
  backend().linear_forward(y.data(), x.data(), W.data(), nullptr, 1, 2, 3, 3);
  EXPECT_EQ(to_host(y), (std::vector<float>{9.0f, 12.0f, 15.0f}));
  // Column prefix of width 2 of the same matrix (ldw 3).
  Tensor y2 = zeros_on_device(2);
  backend().linear_forward(y2.data(), x.data(), W.data(), b.data(), 1, 2, 2, 3);
  EXPECT_EQ(to_host(y2), (std::vector<float>{9.5f, 12.0f}));
}

void Linear::check_gradients(int64_t rows, int64_t in, int64_t out_dim, int64_t ldw,
                             bool with_bias) {
  auto x = random_vector(rows * in, 1), W = random_vector(in * ldw, 2), b = random_vector(ldw, 3);
  auto R = random_vector(rows * out_dim, 4);
  Tensor dev_x = on_device(x), dev_W = on_device(W), dev_b = on_device(b), dev_R = on_device(R),
         dev_y = zeros_on_device(rows * out_dim);
  // The finite differences perturb the host copies; the loss stages them on every evaluation.
  auto loss = [&] {
    dev_x.copy_from_host(x.data());
    dev_W.copy_from_host(W.data());
    dev_b.copy_from_host(b.data());
    backend().linear_forward(dev_y.data(), dev_x.data(), dev_W.data(),
                             with_bias ? dev_b.data() : nullptr, rows, in, out_dim, ldw);
    return dot(to_host(dev_y).data(), R.data(), rows * out_dim);
  };
  loss();
  const float sentinel = 0.0f;  // untouched entries must stay exactly as they were
  Tensor dev_dx = on_device(std::vector<float>(rows * in, 9.0f)),
         dev_dW = on_device(std::vector<float>(in * ldw, sentinel)),
         dev_db = on_device(std::vector<float>(ldw, sentinel));
  backend().linear_backward(dev_dx.data(), dev_dW.data(), with_bias ? dev_db.data() : nullptr,
                            dev_R.data(), dev_x.data(), dev_W.data(), rows, in, out_dim, ldw);
  const auto dx = to_host(dev_dx), dW = to_host(dev_dW), db = to_host(dev_db);
  EXPECT_EQ(expect_gradients_match("dx", loss, x.data(), dx.data(), rows * in), 0);
  EXPECT_EQ(expect_gradients_match("dW", loss, W.data(), dW.data(), in * ldw), 0);
  if (with_bias) {
    EXPECT_EQ(expect_gradients_match("db", loss, b.data(), db.data(), ldw), 0);
  }
  for (int64_t i = 0; i < in; ++i)
    for (int64_t c = out_dim; c < ldw; ++c) EXPECT_EQ(dW[i * ldw + c], sentinel) << i << "," << c;
  for (int64_t c = out_dim; c < ldw; ++c) EXPECT_EQ(db[c], sentinel);
}

TEST_P(Linear, GradientsMatchFiniteDifferences) { check_gradients(6, 5, 7, 7, true); }
TEST_P(Linear, GradientsWithoutBias) { check_gradients(4, 3, 9, 9, false); }
TEST_P(Linear, ColumnPrefixOfWiderMatrix) { check_gradients(5, 6, 4, 11, true); }
TEST_P(Linear, BiasGradientAcrossColumnBlocks) { check_gradients(3, 2, 70, 80, true); }

TEST_P(Linear, BackwardAccumulatesParametersAndSkipsNullInputGradient) {
  const int64_t rows = 3, in = 4, out_dim = 5;
  auto x = random_vector(rows * in, 5), W = random_vector(in * out_dim, 6),
       dy = random_vector(rows * out_dim, 7);
  Tensor dev_x = on_device(x), dev_W = on_device(W), dev_dy = on_device(dy),
         dev_dW = zeros_on_device(in * out_dim), dev_db = zeros_on_device(out_dim);
  auto backward = [&] {
    backend().linear_backward(nullptr, dev_dW.data(), dev_db.data(), dev_dy.data(), dev_x.data(),
                              dev_W.data(), rows, in, out_dim, out_dim);
  };
  backward();
  const auto dW1 = to_host(dev_dW), db1 = to_host(dev_db);
  backward();
  const auto dW = to_host(dev_dW), db = to_host(dev_db);
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

// train.precision bf16 (core/gemm.h) on every backend: both operands of all three products rounded
// to bfloat16, float32 accumulation. Operands whose float32 products are far from their bf16 ones:
// x = dy = 1 + 2^-10 round to 1 (below half a bfloat16 ulp, 2^-8), W = 1 + 3·2^-9 rounds to
// 1 + 2^-7 (above it); every rounded product and sum is exact, so the results are exact numbers
// a backend that left either operand unrounded misses by 2^-10 or more per term.
TEST_P(Linear, Bf16ProductsRoundBothOperands) {
  const int64_t rows = 8, in = 64, out_dim = 16;
  const float x_value = 1.0f + 0x1p-10f, w_value = 1.0f + 3 * 0x1p-9f;
  Tensor x = on_device(std::vector<float>(rows * in, x_value)),
         W = on_device(std::vector<float>(in * out_dim, w_value)),
         dy = on_device(std::vector<float>(rows * out_dim, x_value)),
         y = zeros_on_device(rows * out_dim), dx = zeros_on_device(rows * in),
         dW = zeros_on_device(in * out_dim);
  const MatmulPrecisionScope bf16(MatmulPrecision::Bf16);
  backend().linear_forward(y.data(), x.data(), W.data(), nullptr, rows, in, out_dim, out_dim);
  backend().linear_backward(dx.data(), dW.data(), nullptr, dy.data(), x.data(), W.data(), rows, in,
                            out_dim, out_dim);
  const float w_rounded = 1.0f + 0x1p-7f;
  EXPECT_EQ(to_host(y), std::vector<float>(rows * out_dim, in * w_rounded));  // x · W
  EXPECT_EQ(to_host(dx), std::vector<float>(rows * in, out_dim * w_rounded));  // dy · Wᵀ
  EXPECT_EQ(to_host(dW), std::vector<float>(in * out_dim, float(rows)));       // xᵀ · dy
}

}  // namespace
}  // namespace hg
