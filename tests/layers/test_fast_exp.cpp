#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "layers/cpu/fast_exp.h"

namespace hg {
namespace {

TEST(FastExp, WithinTwoUlpOfExpOverTheRange) {
  double worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
    const double want = std::exp(double(x));
    const double got = exp_approx(x);
    const double ulp = std::ldexp(1.0, std::ilogb(want) - 23);
    worst = std::max(worst, std::fabs(got - want) / ulp);
  }
  EXPECT_LE(worst, 2.0);
  EXPECT_EQ(exp_approx(0.0f), 1.0f);
}

TEST(FastExp, ClampsInsteadOfOverflowing) {
  EXPECT_TRUE(std::isfinite(exp_approx(1000.0f)));
  EXPECT_GT(exp_approx(1000.0f), 1e38f);
  EXPECT_GE(exp_approx(-1000.0f), 0.0f);
  EXPECT_LT(exp_approx(-1000.0f), 1e-37f);
  EXPECT_EQ(1.0f / (1.0f + exp_approx(1000.0f)), 1.0f / (1.0f + exp_approx(1000.0f)));
  EXPECT_LT(1.0f / (1.0f + exp_approx(1000.0f)), 1e-37f);
}

}  // namespace
}  // namespace hg
