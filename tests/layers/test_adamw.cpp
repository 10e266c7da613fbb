// The AdamW step (layers/adamw.h) on every backend (tests/support/backends.h): the per-element
// equations of core/adamw_scalars.h, and three steps against the CPU backend.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/adamw_scalars.h"
#include "tests/support/backends.h"
#include "tests/support/gradcheck.h"

namespace hg {
namespace {

using testing::expect_close;
using testing::random_vector;
using testing::to_host;

class AdamW : public testing::OnEveryBackend {};
HG_TEST_ON_EVERY_BACKEND(AdamW);

// One step from fresh moments, in double from the equations: θ·decay_factor, then
// m = (1-β1)g, v = (1-β2)g², θ -= step_size·m/(sqrt(v)/sqrt_bias2 + eps). Float32 throughout on
// the backend: a few ulp of θ ~ 1 -> 1e-6.
TEST_P(AdamW, FirstStepFollowsTheEquations) {
  const int64_t n = 37;
  const auto value0 = random_vector(n, 1), grad = random_vector(n, 2);
  const AdamWScalars k = adamw_scalars(0.9, 0.95, 1e-8, 0.1, 1, 1e-2);
  for (bool decay : {true, false}) {
    Tensor value = on_device(value0), g = on_device(grad), m = zeros_on_device(n),
           v = zeros_on_device(n);
    backend().adamw_step(value.data(), g.data(), m.data(), v.data(), n, k, decay);
    const auto got = to_host(value), got_m = to_host(m), got_v = to_host(v);
    for (int64_t i = 0; i < n; ++i) {
      const double mi = (1.0 - k.beta1) * grad[i], vi = (1.0 - k.beta2) * grad[i] * grad[i];
      const double want = value0[i] * (decay ? k.decay_factor : 1.0) -
                          k.step_size * mi / (std::sqrt(vi) / k.sqrt_bias2 + k.eps);
      EXPECT_NEAR(got_m[i], mi, 1e-7) << i;
      EXPECT_NEAR(got_v[i], vi, 1e-7) << i;
      EXPECT_NEAR(got[i], want, 1e-6) << i << (decay ? " decayed" : "");
    }
  }
}

// Three updates of a decayed and an undecayed tensor against the CPU backend, fresh gradients
// each step, lr 1e-2 so every step moves the values visibly. Same AdamWScalars, same statement
// order (layers/cuda/adamw.cu); only FMA contraction may differ, an ulp or two per step:
//   exp_avg ~ 0.1, exp_avg_sq ~ 0.01 -> atol 1e-7 + rtol 1e-5;
//   value moves by <= ~lr per step with a ratio a few ulp apart -> atol 1e-6 + rtol 1e-5.
// On the CPU backend: the same code, bits.
TEST_P(AdamW, MatchesTheCpuBackendOverThreeSteps) {
  const int64_t n = 33 * 17;
  for (bool decay : {true, false}) {
    std::vector<float> value = random_vector(n, 61), m(n), v(n);
    Tensor dev_value = on_device(value), dev_m = zeros_on_device(n), dev_v = zeros_on_device(n),
           dev_grad = zeros_on_device(n);
    for (int64_t t = 1; t <= 3; ++t) {
      const AdamWScalars k = adamw_scalars(0.9, 0.95, 1e-8, 0.1, t, 1e-2);
      const auto grad = random_vector(n, 61 + t);
      cpu_backend().adamw_step(value.data(), grad.data(), m.data(), v.data(), n, k, decay);
      dev_grad.copy_from_host(grad.data());
      backend().adamw_step(dev_value.data(), dev_grad.data(), dev_m.data(), dev_v.data(), n, k,
                           decay);
    }
    const char* what = decay ? "decayed" : "not decayed";
    expect_close(std::string(what) + " value", to_host(dev_value), value, 1e-6, 1e-5);
    expect_close(std::string(what) + " exp_avg", to_host(dev_m), m, 1e-7, 1e-5);
    expect_close(std::string(what) + " exp_avg_sq", to_host(dev_v), v, 1e-7, 1e-5);
  }
}

}  // namespace
}  // namespace hg
