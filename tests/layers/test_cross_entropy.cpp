#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "layers/cross_entropy.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::expect_gradients_match;
using testing::random_vector;

TEST(CrossEntropy, ForwardValues) {
  std::vector<float> logits = {0, 0, 0, 0, 1, 2, 3, 0};
  std::vector<int32_t> targets = {1, 2};
  std::vector<float> losses(2);
  cross_entropy_forward(losses.data(), logits.data(), targets.data(), 2, 4);
  EXPECT_NEAR(losses[0], std::log(4.0), 1e-6);
  EXPECT_NEAR(losses[1], std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + 1.0) - 3.0, 1e-6);
}

TEST(CrossEntropy, StableForHugeLogits) {
  std::vector<float> logits = {1000, 1001, -1000, 90000, 90000, 0};
  std::vector<int32_t> targets = {0, 1};
  std::vector<float> losses(2), g(6);
  cross_entropy_forward(losses.data(), logits.data(), targets.data(), 2, 3);
  EXPECT_NEAR(losses[0], std::log1p(std::exp(1.0)), 1e-5);
  EXPECT_NEAR(losses[1], std::log(2.0), 1e-6);
  cross_entropy_backward(g.data(), logits.data(), targets.data(), 1.0f, 2, 3);
  for (float v : g) EXPECT_TRUE(std::isfinite(v));
  EXPECT_NEAR(g[4], -0.5f, 1e-6);
  EXPECT_NEAR(g[3], 0.5f, 1e-6);
}

TEST(CrossEntropy, RejectsTargetsOutsideVocabulary) {
  std::vector<float> logits(4), losses(2);
  std::vector<int32_t> targets = {0, 2};
  EXPECT_THROW(cross_entropy_forward(losses.data(), logits.data(), targets.data(), 2, 2),
               UsageError);
}

TEST(CrossEntropy, GradientIsScaledSoftmaxMinusOneHot) {
  const int64_t rows = 5;
  const int V = 11;
  const float scale = 1.0f / 7.0f;
  auto logits = random_vector(rows * V, 1, 3.0f);
  std::vector<int32_t> targets = {0, 10, 3, 3, 7};
  std::vector<float> losses(rows), g(rows * V, 5.0f);
  auto loss = [&] {
    cross_entropy_forward(losses.data(), logits.data(), targets.data(), rows, V);
    double s = 0;
    for (float l : losses) s += l;
    return scale * s;
  };
  cross_entropy_backward(g.data(), logits.data(), targets.data(), scale, rows, V);
  EXPECT_EQ(expect_gradients_match("dlogits", loss, logits.data(), g.data(), rows * V,
                                   {.max_checks = 55}),
            0);
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    for (int i = 0; i < V; ++i) s += g[r * V + i];
    EXPECT_NEAR(s, 0.0, 1e-6);
    EXPECT_LT(g[r * V + targets[r]], 0.0f);
  }
}

}  // namespace
}  // namespace hg
