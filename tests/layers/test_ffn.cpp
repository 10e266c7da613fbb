// The MatFormer-nested FFN on every backend (tests/support/backends.h): the equation in double,
// a hand-checked case, finite differences, the inactive suffix untouched, accumulation.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "core/enum_names.h"
#include "core/error.h"
#include "core/gemm.h"
#include "layers/activation.h"
#include "layers/ffn.h"
#include "layers/linear.h"
#include "layers/weight_gradients.h"
#include "tests/support/backends.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::dot;
using testing::expect_gradients_match;
using testing::random_vector;
using testing::to_host;

class Ffn : public testing::OnEveryBackend {
 protected:
  void check_gradients(Activation act, int width, bool with_b2);
};
HG_TEST_ON_EVERY_BACKEND(Ffn);

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

// 1e-5 absolute on outputs of size ~1 leaves room for any backend's summation order (a few ulp).
TEST_P(Ffn, ForwardMatchesEquationForEveryWidth) {
  const int64_t rows = 3;
  const int d = 5, F = 8;
  auto x = random_vector(rows * d, 1), w1 = random_vector(d * F, 2), b1 = random_vector(F, 3);
  auto w2 = random_vector(F * d, 4), b2 = random_vector(d, 5);
  Tensor dev_x = on_device(x), dev_w1 = on_device(w1), dev_b1 = on_device(b1),
         dev_w2 = on_device(w2), dev_b2 = on_device(b2), dev_out = zeros_on_device(rows * d);
  for (Activation act : {Activation::Relu2, Activation::Gelu})
    for (int w : {1, 3, 8}) {
      FfnCache cache;
      backend().ffn_forward(dev_out.data(), cache, dev_x.data(), dev_w1.data(), dev_b1.data(),
                            dev_w2.data(), dev_b2.data(), rows, d, F, w, act);
      const auto out = to_host(dev_out);
      auto want = ffn_reference(x, w1, b1, w2, b2, rows, d, F, w, act);
      for (int64_t i = 0; i < rows * d; ++i) EXPECT_NEAR(out[i], want[i], 1e-5) << w << " " << i;
      EXPECT_EQ(cache.pre.dim(1), w);
      EXPECT_EQ(cache.pre.device(), device());
    }
}

// Small integers: exact on every backend.
TEST_P(Ffn, HandCheckedRelu2) {
  // d = 1, F = 2: hidden = (2x - 1, -x), out = relu2(h0)·3 + relu2(h1)·5 + 0.5
  Tensor x = on_device({2, -1}), w1 = on_device({2, -1}), b1 = on_device({-1, 0}),
         w2 = on_device({3, 5}), b2 = on_device({0.5f}), dev_out = zeros_on_device(2);
  FfnCache cache;
  auto forward = [&](int width) {
    backend().ffn_forward(dev_out.data(), cache, x.data(), w1.data(), b1.data(), w2.data(),
                          b2.data(), 2, 1, 2, width, Activation::Relu2);
    return to_host(dev_out);
  };
  auto out = forward(2);
  EXPECT_EQ(out[0], 9 * 3 + 0 + 0.5f);  // h = (3, -2)
  EXPECT_EQ(out[1], 0 + 1 * 5 + 0.5f);  // h = (-3, 1)
  out = forward(1);
  EXPECT_EQ(out[0], 27.5f);
  EXPECT_EQ(out[1], 0.5f);
  EXPECT_THROW(forward(3), UsageError);
}

// The FFN's device buffers, staged from host copies that the finite differences perturb.
struct FfnBuffers {
  Tensor x, w1, b1, w2, b2, out;
  void stage(const std::vector<float>& hx, const std::vector<float>& hw1,
             const std::vector<float>& hb1, const std::vector<float>& hw2,
             const std::vector<float>& hb2) {
    x.copy_from_host(hx.data());
    w1.copy_from_host(hw1.data());
    b1.copy_from_host(hb1.data());
    w2.copy_from_host(hw2.data());
    b2.copy_from_host(hb2.data());
  }
};

void Ffn::check_gradients(Activation act, int width, bool with_b2) {
  const int64_t rows = 4;
  const int d = 6, F = 10;
  auto x = random_vector(rows * d, 11), w1 = random_vector(d * F, 12), b1 = random_vector(F, 13);
  auto w2 = random_vector(F * d, 14), b2 = random_vector(d, 15), R = random_vector(rows * d, 16);
  FfnBuffers dev{on_device(x),  on_device(w1), on_device(b1),
                 on_device(w2), on_device(b2), zeros_on_device(rows * d)};
  FfnCache cache;
  auto loss = [&] {
    dev.stage(x, w1, b1, w2, b2);
    backend().ffn_forward(dev.out.data(), cache, dev.x.data(), dev.w1.data(), dev.b1.data(),
                          dev.w2.data(), with_b2 ? dev.b2.data() : nullptr, rows, d, F, width, act);
    return dot(to_host(dev.out).data(), R.data(), rows * d);
  };
  loss();
  Tensor dev_R = on_device(R), dev_dx = on_device(std::vector<float>(rows * d, 3.0f)),
         dev_dw1 = zeros_on_device(d * F), dev_db1 = zeros_on_device(F),
         dev_dw2 = zeros_on_device(F * d), dev_db2 = zeros_on_device(d);
  auto backward = [&](Tensor& dx) {
    backend().ffn_backward(dx.data(), dev_dw1.data(), dev_db1.data(), dev_dw2.data(),
                           with_b2 ? dev_db2.data() : nullptr, dev_R.data(), cache, dev.x.data(),
                           dev.w1.data(), dev.w2.data(), rows, d, F, width, act);
  };
  backward(dev_dx);
  const auto dx = to_host(dev_dx), dw1 = to_host(dev_dw1), db1 = to_host(dev_db1),
             dw2 = to_host(dev_dw2), db2 = to_host(dev_db2);
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
  // A second backward (through the backend's reused workspace) gives the same input gradient,
  // and parameter gradients accumulate.
  Tensor dev_dx2 = zeros_on_device(rows * d);
  backward(dev_dx2);
  EXPECT_EQ(to_host(dev_dx2), dx);
  const auto dw1_twice = to_host(dev_dw1);
  for (size_t i = 0; i < dw1.size(); ++i) EXPECT_FLOAT_EQ(dw1_twice[i], 2 * dw1[i]);
}

TEST_P(Ffn, Relu2GradientsFullWidth) { check_gradients(Activation::Relu2, 10, true); }
TEST_P(Ffn, Relu2GradientsPrefixWidth) { check_gradients(Activation::Relu2, 4, true); }
TEST_P(Ffn, GeluGradientsPrefixWidth) { check_gradients(Activation::Gelu, 3, true); }
TEST_P(Ffn, GeluGradientsPrefixWidthWithoutB2) { check_gradients(Activation::Gelu, 7, false); }

// The CPU layer's two backward forms (allocating, and caller workspace, which the CPU backend
// uses) give the same numbers. CPU-only: the forms are layers/ffn.h's, not the Backend's.
TEST(FfnCpu, WorkspaceOverloadMatchesAllocatingOverload) {
  const int64_t rows = 4;
  const int d = 6, F = 10, width = 7;
  auto x = random_vector(rows * d, 11), w1 = random_vector(d * F, 12), b1 = random_vector(F, 13);
  auto w2 = random_vector(F * d, 14), b2 = random_vector(d, 15), R = random_vector(rows * d, 16);
  FfnCache cache;
  std::vector<float> out(rows * d);
  ffn_forward(out.data(), cache, x.data(), w1.data(), b1.data(), w2.data(), b2.data(), rows, d, F,
              width, Activation::Gelu);
  std::vector<float> dx(rows * d), dx2(rows * d), scratch(rows * width, 99.0f);
  std::vector<float> dw1(d * F), db1(F), dw2(F * d), db2(d);
  ffn_backward(dx.data(), dw1.data(), db1.data(), dw2.data(), db2.data(), R.data(), cache, x.data(),
               w1.data(), w2.data(), rows, d, F, width, Activation::Gelu);
  auto dw1_once = dw1;
  ffn_backward(dx2.data(), dw1.data(), db1.data(), dw2.data(), db2.data(), R.data(), cache,
               x.data(), w1.data(), w2.data(), rows, d, F, width, Activation::Gelu, scratch.data());
  EXPECT_EQ(dx2, dx);
  for (size_t i = 0; i < dw1.size(); ++i) EXPECT_FLOAT_EQ(dw1[i], 2 * dw1_once[i]);
}

// The CPU FFN adds b1 in the activation's pass and sums db1 in the activation backward's; at
// train.precision bf16 it also keeps its hidden activation and gradient as bfloat16 only and
// rounds the output gradient once for its two products (layers/cpu/ffn.cpp). That must give the
// bits of the plain composition (linear, activation, linear in float32, every product rounding
// its own operands), forward and backward, with zbh1's deferred weight gradients too. Shapes on
// both bf16 paths: 96×128×64 products (oneDNN's matmul; db1 in three row chunks) and 5×7×6
// (sgemm).
TEST(FfnCpu, GivesThePlainCompositionsBitsAtEitherPrecision) {
  const int shapes[][4] = {{96, 64, 160, 128}, {5, 6, 10, 7}};  // rows, d, F, width
  for (const MatmulPrecision precision : {MatmulPrecision::Fp32, MatmulPrecision::Bf16})
    for (const auto& s : shapes)
      for (const Activation act : {Activation::Relu2, Activation::Gelu})
        for (const bool deferred : {false, true}) {
          const MatmulPrecisionScope scope(precision);
          const int64_t rows = s[0];
          const int d = s[1], F = s[2], width = s[3];
          auto x = random_vector(rows * d, 21), w1 = random_vector(d * F, 22);
          auto b1 = random_vector(F, 23), w2 = random_vector(F * d, 24), b2 = random_vector(d, 25);
          auto R = random_vector(rows * d, 26);
          // The plain composition.
          std::vector<float> pre(rows * width), hidden(rows * width), out(rows * d);
          linear_forward(pre.data(), x.data(), w1.data(), b1.data(), rows, d, width, F);
          activation_forward(hidden.data(), pre.data(), rows * width, act);
          linear_forward(out.data(), hidden.data(), w2.data(), b2.data(), rows, width, d, d);
          std::vector<float> dx(rows * d), dw1(d * F), db1(F), dw2(F * d), db2(d);
          std::vector<float> dhidden(rows * width);
          linear_backward(dhidden.data(), dw2.data(), db2.data(), R.data(), hidden.data(),
                          w2.data(), rows, width, d, d);
          activation_backward(dhidden.data(), dhidden.data(), pre.data(), rows * width, act);
          linear_backward(dx.data(), dw1.data(), db1.data(), dhidden.data(), x.data(), w1.data(),
                          rows, d, width, F);
          // The layer.
          FfnCache cache;
          std::vector<float> out2(rows * d), dx2(rows * d), dw1_2(d * F), db1_2(F), dw2_2(F * d),
              db2_2(d);
          ffn_forward(out2.data(), cache, x.data(), w1.data(), b1.data(), w2.data(), b2.data(),
                      rows, d, F, width, act);
          EXPECT_EQ(cache.act.empty(), precision == MatmulPrecision::Bf16);
          DeferredWeightGradients queue;
          {
            std::optional<DeferWeightGradients> defer;
            if (deferred) defer.emplace(queue);
            ffn_backward(dx2.data(), dw1_2.data(), db1_2.data(), dw2_2.data(), db2_2.data(),
                         R.data(), cache, x.data(), w1.data(), w2.data(), rows, d, F, width, act);
          }
          EXPECT_EQ(queue.empty(), !deferred);
          queue.run();
          const std::string what = std::string(enum_name(precision)) + " rows " +
                                   std::to_string(rows) + " act " + std::string(enum_name(act)) +
                                   (deferred ? " deferred" : "");
          EXPECT_EQ(out2, out) << what;
          EXPECT_EQ(dx2, dx) << what;
          EXPECT_EQ(dw1_2, dw1) << what;
          EXPECT_EQ(db1_2, db1) << what;
          EXPECT_EQ(dw2_2, dw2) << what;
          EXPECT_EQ(db2_2, db2) << what;
        }
}

}  // namespace
}  // namespace hg
