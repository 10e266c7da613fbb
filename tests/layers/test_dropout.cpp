// Dropout on every backend (tests/support/backends.h). Masks are bits: every backend must keep
// exactly the elements the documented Philox counter keeps, so these tests compare exactly.
#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"
#include "core/random.h"
#include "layers/dropout.h"
#include "tests/support/backends.h"
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

class Dropout : public testing::OnEveryBackend {
 protected:
  // x through the backend's forward (backward) in place on a device copy, read back.
  std::vector<float> forward(const std::vector<float>& x, const DropoutSite& s, int64_t B,
                             int64_t per) {
    Tensor t = on_device(x);
    backend().dropout_forward(t.data(), s, B, per);
    return testing::to_host(t);
  }
  std::vector<float> backward(const std::vector<float>& dy, const DropoutSite& s, int64_t B,
                              int64_t per) {
    Tensor t = on_device(dy);
    backend().dropout_backward(t.data(), s, B, per);
    return testing::to_host(t);
  }
};
HG_TEST_ON_EVERY_BACKEND(Dropout);

TEST_P(Dropout, ZeroProbabilityIsIdentity) {
  auto x = random_vector(1000, 1);
  EXPECT_EQ(forward(x, site_with(0.0f, 0), 4, 250), x);
  EXPECT_EQ(backward(x, site_with(0.0f, 0), 4, 250), x);
}

TEST_P(Dropout, KeepsAboutOneMinusPAndScalesKeptValues) {
  const float p = 0.3f;
  const int64_t B = 4, per = 25000;
  const auto x = forward(std::vector<float>(B * per, 1.0f), site_with(p, 0), B, per);
  int64_t kept = 0;
  for (float v : x) {
    if (v != 0.0f) {
      ++kept;
      EXPECT_EQ(v, 1.0f / (1.0f - p));
    }
  }
  EXPECT_NEAR(double(kept) / (B * per), 1.0 - p, 0.01);
}

TEST_P(Dropout, MaskDependsOnlyOnSampleIndexAndElement) {
  // Samples 5, 6 as a micro-batch of 2 are rows 1, 2 of samples 4..7 as a micro-batch of 4.
  const int64_t per = 5000;  // spans several parallel chunks
  auto x4 = random_vector(4 * per, 2);
  const auto x2 = forward(std::vector<float>(x4.begin() + per, x4.begin() + 3 * per),
                          site_with(0.5f, 5), 2, per);
  x4 = forward(x4, site_with(0.5f, 4), 4, per);
  for (int64_t i = 0; i < 2 * per; ++i) ASSERT_EQ(x2[i], x4[per + i]) << i;
}

TEST_P(Dropout, MaskFollowsTheDocumentedCounter) {
  const int64_t B = 2, per = 300;
  DropoutSite s = site_with(0.4f, 11);
  const auto x = forward(std::vector<float>(B * per, 1.0f), s, B, per);
  const uint64_t key = random_key(s.seed, RandomPurpose::Dropout);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t e = 0; e < per; ++e) {
      PhiloxBlock c = {uint32_t(s.step), uint32_t(s.first_sample + b), s.site, uint32_t(e)};
      bool keep = uniform_from_bits(philox4x32(key, c)[0]) >= s.p;
      ASSERT_EQ(x[b * per + e] != 0.0f, keep) << b << "," << e;
    }
}

TEST_P(Dropout, DifferentStepSiteOrSeedGiveDifferentMasks) {
  const int64_t per = 2000;
  auto mask = [&](const DropoutSite& s) {
    return forward(std::vector<float>(per, 1.0f), s, 1, per);
  };
  auto base = mask(site_with(0.5f, 0));
  EXPECT_EQ(mask(site_with(0.5f, 0)), base);
  EXPECT_NE(mask(site_with(0.5f, 0, 8)), base);
  EXPECT_NE(mask(site_with(0.5f, 0, 7, 4)), base);
  EXPECT_NE(mask(site_with(0.5f, 0, 7, 3, "stacks/0/blocks/1/attn")), base);
  EXPECT_NE(mask(site_with(0.5f, 1)), base);
}

TEST_P(Dropout, BackwardUsesTheForwardMask) {
  const int64_t B = 3, per = 777;
  DropoutSite s = site_with(0.25f, 2);
  auto x = random_vector(B * per, 3), R = random_vector(B * per, 4);
  auto loss = [&] { return dot(forward(x, s, B, per).data(), R.data(), B * per); };
  const auto dx = backward(R, s, B, per);
  EXPECT_EQ(expect_gradients_match("dx", loss, x.data(), dx.data(), B * per, {.max_checks = 300}),
            0);
  const std::vector<float> ones(B * per, 1.0f);
  EXPECT_EQ(forward(ones, s, B, per), backward(ones, s, B, per));
}

TEST_P(Dropout, RejectsBadProbability) {
  Tensor x = zeros_on_device(4);
  EXPECT_THROW(backend().dropout_forward(x.data(), site_with(1.0f, 0), 1, 4), UsageError);
  EXPECT_THROW(backend().dropout_forward(x.data(), site_with(-0.1f, 0), 1, 4), UsageError);
}

}  // namespace
}  // namespace hg
