#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"
#include "core/random.h"
#include "layers/dropout.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::dot;
using testing::expect_gradients_match;
using testing::random_vector;

DropoutSite site_with(float p, int64_t first_sample, uint64_t seed = 7, int64_t step = 3,
                      const char* name = "stacks/0/blocks/1/ffn") {
  DropoutSite s;
  s.seed = seed;
  s.step = step;
  s.first_sample = first_sample;
  s.site = dropout_site_id(name);
  s.p = p;
  return s;
}

TEST(Dropout, ZeroProbabilityIsIdentity) {
  auto x = random_vector(1000, 1);
  auto y = x;
  dropout_forward(y.data(), site_with(0.0f, 0), 4, 250);
  EXPECT_EQ(y, x);
  dropout_backward(y.data(), site_with(0.0f, 0), 4, 250);
  EXPECT_EQ(y, x);
}

TEST(Dropout, KeepsAboutOneMinusPAndScalesKeptValues) {
  const float p = 0.3f;
  const int64_t B = 4, per = 25000;
  std::vector<float> x(B * per, 1.0f);
  dropout_forward(x.data(), site_with(p, 0), B, per);
  int64_t kept = 0;
  for (float v : x) {
    if (v != 0.0f) {
      ++kept;
      EXPECT_EQ(v, 1.0f / (1.0f - p));
    }
  }
  EXPECT_NEAR(double(kept) / (B * per), 1.0 - p, 0.01);
}

TEST(Dropout, MaskDependsOnlyOnSampleIndexAndElement) {
  // Samples 5, 6 as a micro-batch of 2 are rows 1, 2 of samples 4..7 as a micro-batch of 4.
  const int64_t per = 5000;  // spans several parallel chunks
  auto x4 = random_vector(4 * per, 2);
  std::vector<float> x2(x4.begin() + per, x4.begin() + 3 * per);
  dropout_forward(x4.data(), site_with(0.5f, 4), 4, per);
  dropout_forward(x2.data(), site_with(0.5f, 5), 2, per);
  for (int64_t i = 0; i < 2 * per; ++i) ASSERT_EQ(x2[i], x4[per + i]) << i;
}

TEST(Dropout, MaskFollowsTheDocumentedCounter) {
  const int64_t B = 2, per = 300;
  DropoutSite s = site_with(0.4f, 11);
  std::vector<float> x(B * per, 1.0f);
  dropout_forward(x.data(), s, B, per);
  const uint64_t key = random_key(s.seed, RandomPurpose::Dropout);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t e = 0; e < per; ++e) {
      PhiloxBlock c = {uint32_t(s.step), uint32_t(s.first_sample + b), s.site, uint32_t(e)};
      bool keep = uniform_from_bits(philox4x32(key, c)[0]) >= s.p;
      ASSERT_EQ(x[b * per + e] != 0.0f, keep) << b << "," << e;
    }
}

TEST(Dropout, DifferentStepSiteOrSeedGiveDifferentMasks) {
  const int64_t per = 2000;
  auto mask = [&](const DropoutSite& s) {
    std::vector<float> x(per, 1.0f);
    dropout_forward(x.data(), s, 1, per);
    return x;
  };
  auto base = mask(site_with(0.5f, 0));
  EXPECT_EQ(mask(site_with(0.5f, 0)), base);
  EXPECT_NE(mask(site_with(0.5f, 0, 8)), base);
  EXPECT_NE(mask(site_with(0.5f, 0, 7, 4)), base);
  EXPECT_NE(mask(site_with(0.5f, 0, 7, 3, "stacks/0/blocks/1/attn")), base);
  EXPECT_NE(mask(site_with(0.5f, 1)), base);
}

TEST(Dropout, BackwardUsesTheForwardMask) {
  const int64_t B = 3, per = 777;
  DropoutSite s = site_with(0.25f, 2);
  auto x = random_vector(B * per, 3), R = random_vector(B * per, 4);
  std::vector<float> y(B * per);
  auto loss = [&] {
    y = x;
    dropout_forward(y.data(), s, B, per);
    return dot(y.data(), R.data(), B * per);
  };
  std::vector<float> dx = R;
  dropout_backward(dx.data(), s, B, per);
  EXPECT_EQ(expect_gradients_match("dx", loss, x.data(), dx.data(), B * per, {.max_checks = 300}),
            0);
  std::vector<float> ones_f(B * per, 1.0f), ones_b(B * per, 1.0f);
  dropout_forward(ones_f.data(), s, B, per);
  dropout_backward(ones_b.data(), s, B, per);
  EXPECT_EQ(ones_f, ones_b);
}

TEST(Dropout, RejectsBadProbability) {
  std::vector<float> x(4);
  EXPECT_THROW(dropout_forward(x.data(), site_with(1.0f, 0), 1, 4), UsageError);
  EXPECT_THROW(dropout_forward(x.data(), site_with(-0.1f, 0), 1, 4), UsageError);
}

}  // namespace
}  // namespace hg
