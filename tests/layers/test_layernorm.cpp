// LayerNorm on every backend (tests/support/backends.h): the equation, a double reference, the
// grouped form, finite differences, accumulation, and agreement with the CPU backend.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "tests/support/backends.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::dot;
using testing::expect_close;
using testing::expect_gradients_match;
using testing::random_vector;
using testing::to_host;

// A layernorm's buffers on the test's device: in/out [rows, groups·C], gain/bias [groups·C],
// mean/rstd [rows·groups].
struct LayerNormBuffers {
  Tensor x, gain, bias, out, mean, rstd;
};

class LayerNorm : public testing::OnEveryBackend {
 protected:
  LayerNormBuffers stage(const std::vector<float>& x, const std::vector<float>& gain,
                         const std::vector<float>& bias, int64_t rows, int groups) const {
    return {on_device(x),
            on_device(gain),
            on_device(bias),
            zeros_on_device(int64_t(x.size())),
            zeros_on_device(rows * groups),
            zeros_on_device(rows * groups)};
  }
  void forward(LayerNormBuffers& b, int64_t rows, int groups, int C) {
    backend().layernorm_forward(b.out.data(), b.mean.data(), b.rstd.data(), b.x.data(),
                                b.gain.data(), b.bias.data(), rows, groups, C);
  }
  void check_gradients(int64_t rows, int groups, int C);
};
HG_TEST_ON_EVERY_BACKEND(LayerNorm);

TEST_P(LayerNorm, ForwardOfOneTwoThreeMatchesTheEquation) {
  // mean 2, biased variance 2/3.
  LayerNormBuffers b = stage({1, 2, 3}, {1, 2, 3}, {0.5f, 0, -1}, 1, 1);
  forward(b, 1, 1, 3);
  const auto out = to_host(b.out), mean = to_host(b.mean), rstd = to_host(b.rstd);
  const double s = 1.0 / std::sqrt(2.0 / 3.0 + 1e-5);
  EXPECT_FLOAT_EQ(mean[0], 2.0f);
  EXPECT_NEAR(rstd[0], s, 1e-6);
  EXPECT_NEAR(out[0], -1.0 * s * 1 + 0.5, 1e-6);
  EXPECT_NEAR(out[1], 0.0 * s * 2 + 0.0, 1e-6);
  EXPECT_NEAR(out[2], 1.0 * s * 3 - 1.0, 1e-6);
}

TEST_P(LayerNorm, ForwardMatchesDoubleReferenceWithLargeMean) {
  // A large common offset: a one-pass E[x²]-mean² variance would lose most digits here.
  const int64_t rows = 3;
  const int C = 37;  // not a multiple of the 16-lane split (CPU) or the 32-lane warp (CUDA)
  auto x = random_vector(rows * C, 11);
  for (auto& v : x) v += 300.0f;
  auto gain = random_vector(C, 12), bias = random_vector(C, 13);
  LayerNormBuffers b = stage(x, gain, bias, rows, 1);
  forward(b, rows, 1, C);
  const auto out = to_host(b.out);
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

TEST_P(LayerNorm, GroupedEqualsIndependentLayerNormPerGroup) {
  const int64_t rows = 4;
  const int groups = 3, C = 20;
  const int64_t W = groups * C;
  auto x = random_vector(rows * W, 21), gain = random_vector(W, 22), bias = random_vector(W, 23);
  LayerNormBuffers all = stage(x, gain, bias, rows, groups);
  forward(all, rows, groups, C);
  const auto out = to_host(all.out), mean = to_host(all.mean), rstd = to_host(all.rstd);
  for (int64_t r = 0; r < rows; ++r)
    for (int g = 0; g < groups; ++g) {
      auto slice = [&](const std::vector<float>& v, int64_t at) {
        return std::vector<float>(v.begin() + at, v.begin() + at + C);
      };
      LayerNormBuffers one =
          stage(slice(x, r * W + g * C), slice(gain, g * C), slice(bias, g * C), 1, 1);
      forward(one, 1, 1, C);
      const auto o = to_host(one.out);
      EXPECT_EQ(to_host(one.mean)[0], mean[r * groups + g]);
      EXPECT_EQ(to_host(one.rstd)[0], rstd[r * groups + g]);
      for (int c = 0; c < C; ++c)
        EXPECT_EQ(o[c], out[r * W + g * C + c]) << r << "," << g << "," << c;
    }
}

void LayerNorm::check_gradients(int64_t rows, int groups, int C) {
  const int64_t W = int64_t(groups) * C;
  auto x = random_vector(rows * W, 31, 2.0f), gain = random_vector(W, 32),
       bias = random_vector(W, 33);
  auto R = random_vector(rows * W, 34);
  LayerNormBuffers b = stage(x, gain, bias, rows, groups);
  // The finite differences perturb the host copies; the loss stages them on every evaluation.
  auto loss = [&] {
    b.x.copy_from_host(x.data());
    b.gain.copy_from_host(gain.data());
    b.bias.copy_from_host(bias.data());
    forward(b, rows, groups, C);
    return dot(to_host(b.out).data(), R.data(), rows * W);
  };
  loss();
  Tensor dev_R = on_device(R), dev_dx = on_device(std::vector<float>(rows * W, 7.0f)),
         dev_dgain = zeros_on_device(W), dev_dbias = zeros_on_device(W);
  backend().layernorm_backward(dev_dx.data(), dev_dgain.data(), dev_dbias.data(), dev_R.data(),
                               b.x.data(), b.gain.data(), b.mean.data(), b.rstd.data(), rows,
                               groups, C);
  const auto dx = to_host(dev_dx), dgain = to_host(dev_dgain), dbias = to_host(dev_dbias);
  EXPECT_EQ(expect_gradients_match("dx", loss, x.data(), dx.data(), rows * W), 0);
  EXPECT_EQ(expect_gradients_match("dgain", loss, gain.data(), dgain.data(), W), 0);
  EXPECT_EQ(expect_gradients_match("dbias", loss, bias.data(), dbias.data(), W), 0);
}

TEST_P(LayerNorm, GradientsMatchFiniteDifferences) { check_gradients(5, 1, 19); }
TEST_P(LayerNorm, GroupedGradientsMatchFiniteDifferences) { check_gradients(5, 4, 24); }
TEST_P(LayerNorm, GroupedGradientsAcrossColumnBlocks) { check_gradients(3, 3, 50); }

TEST_P(LayerNorm, ParameterGradientsAccumulateActivationGradientsAssign) {
  const int64_t rows = 6;
  const int groups = 2, C = 40;
  const int64_t W = groups * C;
  auto x = random_vector(rows * W, 41), gain = random_vector(W, 42), bias = random_vector(W, 43);
  auto dy = random_vector(rows * W, 44);
  LayerNormBuffers b = stage(x, gain, bias, rows, groups);
  forward(b, rows, groups, C);
  Tensor dev_dy = on_device(dy), dev_dx1 = zeros_on_device(rows * W),
         dev_dx2 = on_device(std::vector<float>(rows * W, 123.0f)), dev_dgain = zeros_on_device(W),
         dev_dbias = zeros_on_device(W);
  auto backward = [&](Tensor& dx) {
    backend().layernorm_backward(dx.data(), dev_dgain.data(), dev_dbias.data(), dev_dy.data(),
                                 b.x.data(), b.gain.data(), b.mean.data(), b.rstd.data(), rows,
                                 groups, C);
  };
  backward(dev_dx1);
  const auto dgain1 = to_host(dev_dgain), dbias1 = to_host(dev_dbias);
  backward(dev_dx2);
  const auto dgain = to_host(dev_dgain), dbias = to_host(dev_dbias);
  EXPECT_EQ(to_host(dev_dx1), to_host(dev_dx2));
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

// Against the CPU backend, plain (groups 1) and grouped (per-head) forms; C values not multiples
// of 32 exercise the CUDA warps' tails. Inputs sit around +2 (|mean| > std) so a one-pass variance
// would show. Tolerances for a backend that sums in another order (CUDA's warp butterflies vs
// the CPU's 16 lanes):
//   forward: mean and variance are sums of C <= 67 values of size ~2 in different orders, a few
//   ulp apart (~1e-6); out ~ |norm·gain + bias| <= ~6 -> atol 1e-5 + rtol 1e-5.
//   dinp: the same two row sums, times rstd ~ 1.7 -> atol 1e-5 + rtol 1e-5.
//   dgain, dbias: sums over 45 rows of terms <= ~3 (plus the random start value) in different
//   orders, ~1e-6 -> atol 5e-5 + rtol 1e-5.
// On the CPU backend the two sides run the same code: bits.
TEST_P(LayerNorm, MatchesTheCpuBackend) {
  const int64_t rows = 45;
  const int shapes[][2] = {{1, 67}, {3, 20}, {4, 64}};  // {groups, C}
  for (const auto& shape : shapes) {
    const int groups = shape[0], C = shape[1];
    const int64_t width = static_cast<int64_t>(groups) * C, n = rows * width;
    const std::string what = "groups " + std::to_string(groups) + " C " + std::to_string(C);
    auto inp = random_vector(n, 11);
    for (auto& x : inp) x += 2.0f;
    auto gain = random_vector(width, 12, 0.5f);
    for (auto& w : gain) w += 1.0f;
    const auto bias = random_vector(width, 13), dout = random_vector(n, 14);
    const auto dgain0 = random_vector(width, 15), dbias0 = random_vector(width, 16);

    std::vector<float> out(n), mean(rows * groups), rstd(rows * groups), dinp(n);
    std::vector<float> dgain = dgain0, dbias = dbias0;
    cpu_backend().layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), gain.data(),
                                    bias.data(), rows, groups, C);
    cpu_backend().layernorm_backward(dinp.data(), dgain.data(), dbias.data(), dout.data(),
                                     inp.data(), gain.data(), mean.data(), rstd.data(), rows,
                                     groups, C);

    LayerNormBuffers b = stage(inp, gain, bias, rows, groups);
    forward(b, rows, groups, C);
    Tensor dev_dout = on_device(dout), dev_dgain = on_device(dgain0), dev_dbias = on_device(dbias0),
           dev_dinp = on_device(std::vector<float>(n, 7.0f));
    backend().layernorm_backward(dev_dinp.data(), dev_dgain.data(), dev_dbias.data(),
                                 dev_dout.data(), b.x.data(), b.gain.data(), b.mean.data(),
                                 b.rstd.data(), rows, groups, C);
    expect_close(what + " out", to_host(b.out), out, 1e-5, 1e-5);
    expect_close(what + " mean", to_host(b.mean), mean, 1e-5, 1e-5);
    expect_close(what + " rstd", to_host(b.rstd), rstd, 1e-5, 1e-5);
    expect_close(what + " dinp", to_host(dev_dinp), dinp, 1e-5, 1e-5);
    expect_close(what + " dgain (+=)", to_host(dev_dgain), dgain, 5e-5, 1e-5);
    expect_close(what + " dbias (+=)", to_host(dev_dbias), dbias, 5e-5, 1e-5);
  }
}

}  // namespace
}  // namespace hg
