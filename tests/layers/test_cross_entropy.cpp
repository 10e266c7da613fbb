// Softmax cross-entropy on every backend (tests/support/backends.h); targets are host int32 on
// every backend (layers/backend.h).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "tests/support/backends.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::expect_close;
using testing::expect_gradients_match;
using testing::random_vector;
using testing::to_host;

class CrossEntropy : public testing::OnEveryBackend {};
HG_TEST_ON_EVERY_BACKEND(CrossEntropy);

TEST_P(CrossEntropy, ForwardValues) {
  Tensor logits = on_device({0, 0, 0, 0, 1, 2, 3, 0}), dev_losses = zeros_on_device(2);
  std::vector<int32_t> targets = {1, 2};
  backend().cross_entropy_forward(dev_losses.data(), logits.data(), targets.data(), 2, 4);
  const auto losses = to_host(dev_losses);
  EXPECT_NEAR(losses[0], std::log(4.0), 1e-6);
  EXPECT_NEAR(losses[1], std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + 1.0) - 3.0, 1e-6);
}

TEST_P(CrossEntropy, StableForHugeLogits) {
  Tensor logits = on_device({1000, 1001, -1000, 90000, 90000, 0}), dev_losses = zeros_on_device(2),
         dev_g = zeros_on_device(6);
  std::vector<int32_t> targets = {0, 1};
  backend().cross_entropy_forward(dev_losses.data(), logits.data(), targets.data(), 2, 3);
  const auto losses = to_host(dev_losses);
  EXPECT_NEAR(losses[0], std::log1p(std::exp(1.0)), 1e-5);
  EXPECT_NEAR(losses[1], std::log(2.0), 1e-6);
  backend().cross_entropy_backward(dev_g.data(), logits.data(), targets.data(), 1.0f, 2, 3);
  const auto g = to_host(dev_g);
  for (float v : g) EXPECT_TRUE(std::isfinite(v));
  EXPECT_NEAR(g[4], -0.5f, 1e-6);
  EXPECT_NEAR(g[3], 0.5f, 1e-6);
}

TEST_P(CrossEntropy, RejectsTargetsOutsideVocabulary) {
  Tensor logits = zeros_on_device(4), losses = zeros_on_device(2);
  std::vector<int32_t> targets = {0, 2};
  EXPECT_THROW(backend().cross_entropy_forward(losses.data(), logits.data(), targets.data(), 2, 2),
               UsageError);
}

TEST_P(CrossEntropy, GradientIsScaledSoftmaxMinusOneHot) {
  const int64_t rows = 5;
  const int V = 11;
  const float scale = 1.0f / 7.0f;
  auto logits = random_vector(rows * V, 1, 3.0f);
  std::vector<int32_t> targets = {0, 10, 3, 3, 7};
  Tensor dev_logits = on_device(logits), dev_losses = zeros_on_device(rows),
         dev_g = on_device(std::vector<float>(rows * V, 5.0f));
  auto loss = [&] {
    dev_logits.copy_from_host(logits.data());
    backend().cross_entropy_forward(dev_losses.data(), dev_logits.data(), targets.data(), rows, V);
    double s = 0;
    for (float l : to_host(dev_losses)) s += l;
    return scale * s;
  };
  backend().cross_entropy_backward(dev_g.data(), dev_logits.data(), targets.data(), scale, rows, V);
  const auto g = to_host(dev_g);
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

// Against the CPU backend at byte-sized and larger vocabularies (V not a multiple of the CUDA
// kernel's 256-thread block), logits in [-4, 4). Both sides take exp within 2 ulp per term and
// sum in double, so log Σ differs by ~1e-7 and the float loss (~log V ~ 6) by an ulp or two ->
// losses atol 1e-5 + rtol 1e-5; Backend::sum of the 19 losses within 19·1e-5. dlogits = scale·p
// (a few ulp) except at the target, scale·(p - 1), whose error is a few ulp of scale ->
// atol 1e-5·scale + rtol 1e-5. The backward runs once out of place and once in place
// (dlogits = logits, which the contract allows). On the CPU backend: the same code, bits.
TEST_P(CrossEntropy, MatchesTheCpuBackend) {
  const int64_t rows = 19;
  for (int V : {257, 1000}) {
    const std::string what = "V " + std::to_string(V);
    const auto logits = random_vector(rows * V, 31, 4.0f);
    const auto targets = testing::skewed_tokens(rows, V, 32);
    const float scale = 1.0f / static_cast<float>(rows);
    std::vector<float> losses(rows), dlogits(rows * V);
    cpu_backend().cross_entropy_forward(losses.data(), logits.data(), targets.data(), rows, V);
    cpu_backend().cross_entropy_backward(dlogits.data(), logits.data(), targets.data(), scale, rows,
                                         V);
    const double loss_sum = cpu_backend().sum(losses.data(), rows);

    Tensor dev_logits = on_device(logits), dev_losses = zeros_on_device(rows),
           dev_dlogits = on_device(std::vector<float>(rows * V, 7.0f)),
           dev_inplace = on_device(logits);
    backend().cross_entropy_forward(dev_losses.data(), dev_logits.data(), targets.data(), rows, V);
    const double dev_loss_sum = backend().sum(dev_losses.data(), rows);
    backend().cross_entropy_backward(dev_dlogits.data(), dev_logits.data(), targets.data(), scale,
                                     rows, V);
    backend().cross_entropy_backward(dev_inplace.data(), dev_inplace.data(), targets.data(), scale,
                                     rows, V);
    expect_close(what + " losses", to_host(dev_losses), losses, 1e-5, 1e-5);
    EXPECT_NEAR(dev_loss_sum, loss_sum, rows * 1e-5) << what;
    expect_close(what + " dlogits", to_host(dev_dlogits), dlogits, 1e-5 * scale, 1e-5);
    expect_close(what + " dlogits in place", to_host(dev_inplace), dlogits, 1e-5 * scale, 1e-5);
  }
}

}  // namespace
}  // namespace hg
