#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "layers/activation.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::dot;
using testing::expect_gradients_match;
using testing::random_vector;

double gelu_reference(double z) {
  return 0.5 * z * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (z + 0.044715 * z * z * z)));
}

TEST(Activation, Relu2Values) {
  std::vector<float> z = {-2, -0.5f, 0, 0.5f, 3}, y(5), g(5), ones(5, 1.0f);
  activation_forward(y.data(), z.data(), 5, Activation::Relu2);
  EXPECT_EQ(y, (std::vector<float>{0, 0, 0, 0.25f, 9}));
  activation_backward(g.data(), ones.data(), z.data(), 5, Activation::Relu2);
  EXPECT_EQ(g, (std::vector<float>{0, 0, 0, 1, 6}));
}

TEST(Activation, GeluValuesAreTheTanhForm) {
  std::vector<float> z = {-3, -1, 0, 0.5f, 1, 2.5f}, y(6);
  activation_forward(y.data(), z.data(), 6, Activation::Gelu);
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(y[i], gelu_reference(z[i]), 1e-6) << z[i];
  EXPECT_NEAR(y[4], 0.8411920, 1e-6);  // gelu_tanh(1), a published value
  // The tanh form differs from the erf form by ~1e-4 at z = -1: make sure it is the tanh one.
  EXPECT_GT(std::fabs(y[1] - (-1.0 * 0.5 * (1 + std::erf(-1 / std::sqrt(2.0))))), 1e-5);
}

TEST(Activation, GeluMatchesTanhFormDenselyInDouble) {
  std::vector<float> z;
  for (float v = -12.0f; v <= 12.0f; v += 0.001f) z.push_back(v);
  std::vector<float> y(z.size());
  activation_forward(y.data(), z.data(), int64_t(z.size()), Activation::Gelu);
  for (size_t i = 0; i < z.size(); ++i) {
    const double want = gelu_reference(z[i]);
    ASSERT_NEAR(y[i], want, 1e-6 * std::max(1.0, std::fabs(double(z[i])))) << z[i];
  }
}

void check_activation_gradients(Activation act) {
  const int64_t n = 5000;  // spans two parallel chunks
  auto z = random_vector(n, 1, 3.0f);
  // relu2 has a kink in its second derivative at 0: keep finite differences off it.
  for (auto& v : z)
    if (std::fabs(v) < 0.05f) v = 0.3f;
  auto R = random_vector(n, 2);
  std::vector<float> y(n), g(n);
  auto loss = [&] {
    activation_forward(y.data(), z.data(), n, act);
    return dot(y.data(), R.data(), n);
  };
  activation_backward(g.data(), R.data(), z.data(), n, act);
  EXPECT_EQ(expect_gradients_match("dz", loss, z.data(), g.data(), n, {.max_checks = 300}), 0);
  // In place (dinp aliasing dout) gives the same result.
  auto inplace = R;
  activation_backward(inplace.data(), inplace.data(), z.data(), n, act);
  EXPECT_EQ(inplace, g);
}

TEST(Activation, Relu2GradientsMatchFiniteDifferences) {
  check_activation_gradients(Activation::Relu2);
}
TEST(Activation, GeluGradientsMatchFiniteDifferences) {
  check_activation_gradients(Activation::Gelu);
}

}  // namespace
}  // namespace hg
