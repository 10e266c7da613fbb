#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "layers/layernorm.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::dot;
using testing::expect_gradients_match;
using testing::random_vector;

TEST(LayerNorm, ForwardOfOneTwoThreeMatchesTheEquation) {
  // mean 2, biased variance 2/3.
  std::vector<float> x = {1, 2, 3}, gain = {1, 2, 3}, bias = {0.5f, 0, -1};
  std::vector<float> out(3), mean(1), rstd(1);
  layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), gain.data(), bias.data(), 1, 1,
                    3);
  const double s = 1.0 / std::sqrt(2.0 / 3.0 + 1e-5);
  EXPECT_FLOAT_EQ(mean[0], 2.0f);
  EXPECT_NEAR(rstd[0], s, 1e-6);
  EXPECT_NEAR(out[0], -1.0 * s * 1 + 0.5, 1e-6);
  EXPECT_NEAR(out[1], 0.0 * s * 2 + 0.0, 1e-6);
  EXPECT_NEAR(out[2], 1.0 * s * 3 - 1.0, 1e-6);
}

TEST(LayerNorm, ForwardMatchesDoubleReferenceWithLargeMean) {
  // A large common offset: a one-pass E[x²]-mean² variance would lose most digits here.
  const int64_t rows = 3;
  const int C = 37;  // not a multiple of the 16-lane split
  auto x = random_vector(rows * C, 11);
  for (auto& v : x) v += 300.0f;
  auto gain = random_vector(C, 12), bias = random_vector(C, 13);
  std::vector<float> out(rows * C), mean(rows), rstd(rows);
  layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), gain.data(), bias.data(), rows,
                    1, C);
  for (int64_t r = 0; r < rows; ++r) {
    double m = 0, v = 0;
    for (int c = 0; c < C; ++c) m += x[r * C + c];
    m /= C;
    for (int c = 0; c < C; ++c) v += (x[r * C + c] - m) * (x[r * C + c] - m);
    v /= C;
    for (int c = 0; c < C; ++c) {
      double want = (x[r * C + c] - m) / std::sqrt(v + 1e-5) * gain[c] + bias[c];
      EXPECT_NEAR(out[r * C + c], want, 2e-4) << r << "," << c;
    }
  }
}

TEST(LayerNorm, GroupedEqualsIndependentLayerNormPerGroup) {
  const int64_t rows = 4;
  const int groups = 3, C = 20;
  const int64_t W = groups * C;
  auto x = random_vector(rows * W, 21), gain = random_vector(W, 22), bias = random_vector(W, 23);
  std::vector<float> out(rows * W), mean(rows * groups), rstd(rows * groups);
  layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), gain.data(), bias.data(), rows,
                    groups, C);
  for (int64_t r = 0; r < rows; ++r)
    for (int g = 0; g < groups; ++g) {
      std::vector<float> o(C), m(1), s(1);
      layernorm_forward(o.data(), m.data(), s.data(), x.data() + r * W + g * C, gain.data() + g * C,
                        bias.data() + g * C, 1, 1, C);
      EXPECT_EQ(m[0], mean[r * groups + g]);
      EXPECT_EQ(s[0], rstd[r * groups + g]);
      for (int c = 0; c < C; ++c)
        EXPECT_EQ(o[c], out[r * W + g * C + c]) << r << "," << g << "," << c;
    }
}

void check_layernorm_gradients(int64_t rows, int groups, int C) {
  const int64_t W = int64_t(groups) * C;
  auto x = random_vector(rows * W, 31, 2.0f), gain = random_vector(W, 32),
       bias = random_vector(W, 33);
  auto R = random_vector(rows * W, 34);
  std::vector<float> out(rows * W), mean(rows * groups), rstd(rows * groups);
  auto loss = [&] {
    layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), gain.data(), bias.data(),
                      rows, groups, C);
    return dot(out.data(), R.data(), rows * W);
  };
  loss();
  std::vector<float> dx(rows * W, 7.0f), dgain(W, 0.0f), dbias(W, 0.0f);
  layernorm_backward(dx.data(), dgain.data(), dbias.data(), R.data(), x.data(), gain.data(),
                     mean.data(), rstd.data(), rows, groups, C);
  EXPECT_EQ(expect_gradients_match("dx", loss, x.data(), dx.data(), rows * W), 0);
  EXPECT_EQ(expect_gradients_match("dgain", loss, gain.data(), dgain.data(), W), 0);
  EXPECT_EQ(expect_gradients_match("dbias", loss, bias.data(), dbias.data(), W), 0);
}

TEST(LayerNorm, GradientsMatchFiniteDifferences) { check_layernorm_gradients(5, 1, 19); }
TEST(LayerNorm, GroupedGradientsMatchFiniteDifferences) { check_layernorm_gradients(5, 4, 24); }
TEST(LayerNorm, GroupedGradientsAcrossColumnBlocks) { check_layernorm_gradients(3, 3, 50); }

TEST(LayerNorm, ParameterGradientsAccumulateActivationGradientsAssign) {
  const int64_t rows = 6;
  const int groups = 2, C = 40;
  const int64_t W = groups * C;
  auto x = random_vector(rows * W, 41), gain = random_vector(W, 42), bias = random_vector(W, 43);
  auto dy = random_vector(rows * W, 44);
  std::vector<float> out(rows * W), mean(rows * groups), rstd(rows * groups);
  layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), gain.data(), bias.data(), rows,
                    groups, C);
  std::vector<float> dx1(rows * W), dx2(rows * W, 123.0f), dgain(W, 0.0f), dbias(W, 0.0f);
  layernorm_backward(dx1.data(), dgain.data(), dbias.data(), dy.data(), x.data(), gain.data(),
                     mean.data(), rstd.data(), rows, groups, C);
  auto dgain1 = dgain, dbias1 = dbias;
  layernorm_backward(dx2.data(), dgain.data(), dbias.data(), dy.data(), x.data(), gain.data(),
                     mean.data(), rstd.data(), rows, groups, C);
  EXPECT_EQ(dx1, dx2);
  for (int64_t c = 0; c < W; ++c) {
    EXPECT_FLOAT_EQ(dgain[c], 2 * dgain1[c]);
    EXPECT_FLOAT_EQ(dbias[c], 2 * dbias1[c]);
  }
  // dbias is the plain column sum of dout.
  for (int64_t c = 0; c < W; ++c) {
    double s = 0;
    for (int64_t r = 0; r < rows; ++r) s += dy[r * W + c];
    EXPECT_NEAR(dbias1[c], s, 1e-5);
  }
}

}  // namespace
}  // namespace hg
