#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "layers/ffn.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::dot;
using testing::expect_gradients_match;
using testing::random_vector;

double act_reference(double z, Activation act) {
  if (act == Activation::Relu2) return z > 0 ? z * z : 0;
  return 0.5 * z * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (z + 0.044715 * z * z * z)));
}

// FFN_w on the equation, in double.
std::vector<double> ffn_reference(const std::vector<float>& x, const std::vector<float>& w1,
                                  const std::vector<float>& b1, const std::vector<float>& w2,
                                  const std::vector<float>& b2, int64_t rows, int d, int F, int w,
                                  Activation act) {
  std::vector<double> out(rows * d);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> h(w);
    for (int j = 0; j < w; ++j) {
      double s = b1[j];
      for (int i = 0; i < d; ++i) s += double(x[r * d + i]) * w1[i * F + j];
      h[j] = act_reference(s, act);
    }
    for (int c = 0; c < d; ++c) {
      double s = b2[c];
      for (int j = 0; j < w; ++j) s += h[j] * w2[j * d + c];
      out[r * d + c] = s;
    }
  }
  return out;
}

TEST(Ffn, ForwardMatchesEquationForEveryWidth) {
  const int64_t rows = 3;
  const int d = 5, F = 8;
  auto x = random_vector(rows * d, 1), w1 = random_vector(d * F, 2), b1 = random_vector(F, 3);
  auto w2 = random_vector(F * d, 4), b2 = random_vector(d, 5);
  for (Activation act : {Activation::Relu2, Activation::Gelu})
    for (int w : {1, 3, 8}) {
      FfnCache cache;
      std::vector<float> out(rows * d);
      ffn_forward(out.data(), cache, x.data(), w1.data(), b1.data(), w2.data(), b2.data(), rows, d,
                  F, w, act);
      auto want = ffn_reference(x, w1, b1, w2, b2, rows, d, F, w, act);
      for (int64_t i = 0; i < rows * d; ++i) EXPECT_NEAR(out[i], want[i], 1e-5) << w << " " << i;
      EXPECT_EQ(cache.pre.dim(1), w);
    }
}

TEST(Ffn, HandCheckedRelu2) {
  // d = 1, F = 2: hidden = (2x - 1, -x), out = relu2(h0)·3 + relu2(h1)·5 + 0.5
  std::vector<float> x = {2, -1}, w1 = {2, -1}, b1 = {-1, 0}, w2 = {3, 5}, b2 = {0.5f}, out(2);
  FfnCache cache;
  ffn_forward(out.data(), cache, x.data(), w1.data(), b1.data(), w2.data(), b2.data(), 2, 1, 2, 2,
              Activation::Relu2);
  EXPECT_EQ(out[0], 9 * 3 + 0 + 0.5f);  // h = (3, -2)
  EXPECT_EQ(out[1], 0 + 1 * 5 + 0.5f);  // h = (-3, 1)
  ffn_forward(out.data(), cache, x.data(), w1.data(), b1.data(), w2.data(), b2.data(), 2, 1, 2, 1,
              Activation::Relu2);
  EXPECT_EQ(out[0], 27.5f);
  EXPECT_EQ(out[1], 0.5f);
  EXPECT_THROW(ffn_forward(out.data(), cache, x.data(), w1.data(), b1.data(), w2.data(), b2.data(),
                           2, 1, 2, 3, Activation::Relu2),
               UsageError);
}

void check_ffn_gradients(Activation act, int width, bool with_b2) {
  const int64_t rows = 4;
  const int d = 6, F = 10;
  auto x = random_vector(rows * d, 11), w1 = random_vector(d * F, 12), b1 = random_vector(F, 13);
  auto w2 = random_vector(F * d, 14), b2 = random_vector(d, 15), R = random_vector(rows * d, 16);
  FfnCache cache;
  std::vector<float> out(rows * d);
  const float* b2p = with_b2 ? b2.data() : nullptr;
  auto loss = [&] {
    ffn_forward(out.data(), cache, x.data(), w1.data(), b1.data(), w2.data(), b2p, rows, d, F,
                width, act);
    return dot(out.data(), R.data(), rows * d);
  };
  loss();
  std::vector<float> dx(rows * d, 3.0f), dw1(d * F, 0.0f), db1(F, 0.0f), dw2(F * d, 0.0f),
      db2(d, 0.0f);
  ffn_backward(dx.data(), dw1.data(), db1.data(), dw2.data(), with_b2 ? db2.data() : nullptr,
               R.data(), cache, x.data(), w1.data(), w2.data(), rows, d, F, width, act);
  testing::GradCheckOptions o{.max_checks = 200};
  EXPECT_EQ(expect_gradients_match("dx", loss, x.data(), dx.data(), rows * d, o), 0);
  EXPECT_EQ(expect_gradients_match("dw1", loss, w1.data(), dw1.data(), d * F, o), 0);
  EXPECT_EQ(expect_gradients_match("db1", loss, b1.data(), db1.data(), F, o), 0);
  EXPECT_EQ(expect_gradients_match("dw2", loss, w2.data(), dw2.data(), F * d, o), 0);
  if (with_b2) {
    EXPECT_EQ(expect_gradients_match("db2", loss, b2.data(), db2.data(), d, o), 0);
  } else {
    for (float v : db2) EXPECT_EQ(v, 0.0f);
  }
  // Outside the active prefix nothing is touched (and the loss does not depend on it).
  for (int i = 0; i < d; ++i)
    for (int j = width; j < F; ++j) EXPECT_EQ(dw1[i * F + j], 0.0f) << i << "," << j;
  for (int j = width; j < F; ++j) EXPECT_EQ(db1[j], 0.0f) << j;
  for (int j = width; j < F; ++j)
    for (int c = 0; c < d; ++c) EXPECT_EQ(dw2[j * d + c], 0.0f) << j << "," << c;
  // Inside it something is (the check above must not pass vacuously).
  double inside = 0;
  for (int j = 0; j < width; ++j) inside += std::fabs(db1[j]);
  EXPECT_GT(inside, 0.0);
  // The workspace overload gives the same numbers, and parameter gradients accumulate.
  std::vector<float> dx2(rows * d), scratch(rows * width, 99.0f);
  auto dw1_once = dw1;
  ffn_backward(dx2.data(), dw1.data(), db1.data(), dw2.data(), with_b2 ? db2.data() : nullptr,
               R.data(), cache, x.data(), w1.data(), w2.data(), rows, d, F, width, act,
               scratch.data());
  EXPECT_EQ(dx2, dx);
  for (size_t i = 0; i < dw1.size(); ++i) EXPECT_FLOAT_EQ(dw1[i], 2 * dw1_once[i]);
}

TEST(Ffn, Relu2GradientsFullWidth) { check_ffn_gradients(Activation::Relu2, 10, true); }
TEST(Ffn, Relu2GradientsPrefixWidth) { check_ffn_gradients(Activation::Relu2, 4, true); }
TEST(Ffn, GeluGradientsPrefixWidth) { check_ffn_gradients(Activation::Gelu, 3, true); }
TEST(Ffn, GeluGradientsPrefixWidthWithoutB2) { check_ffn_gradients(Activation::Gelu, 7, false); }

}  // namespace
}  // namespace hg
