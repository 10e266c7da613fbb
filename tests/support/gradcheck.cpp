#include "tests/support/gradcheck.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/random.h"

namespace hg::testing {

int expect_gradients_match(const std::string& what, const std::function<double()>& loss, float* x,
                           const float* analytic, int64_t n, GradCheckOptions options) {
  int mismatches = 0;
  int checks = static_cast<int>(std::min<int64_t>(n, options.max_checks));
  for (int c = 0; c < checks; ++c) {
    int64_t i = checks == 1 ? 0 : (c * (n - 1)) / (checks - 1);
    float saved = x[i];
    x[i] = static_cast<float>(saved + options.eps);
    double plus = loss();
    x[i] = static_cast<float>(saved - options.eps);
    double minus = loss();
    x[i] = saved;
    double fd = (plus - minus) / (2 * options.eps);
    double an = analytic[i];
    double tol = options.atol + options.rtol * std::max(std::fabs(fd), std::fabs(an));
    if (std::fabs(fd - an) > tol) {
      ++mismatches;
      if (mismatches <= 5)
        ADD_FAILURE() << what << "[" << i << "]: finite difference " << fd << " vs analytic " << an
                      << " (tolerance " << tol << ")";
    }
  }
  return mismatches;
}

void fill_uniform(float* x, int64_t n, uint64_t seed, float scale) {
  uint64_t key = random_key(seed, RandomPurpose::Init);
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits = philox4x32(key, counter_of(0, static_cast<uint64_t>(i)))[0];
    x[i] = (uniform_from_bits(bits) * 2.0f - 1.0f) * scale;
  }
}

std::vector<float> random_vector(int64_t n, uint64_t seed, float scale) {
  std::vector<float> v(n);
  fill_uniform(v.data(), n, seed, scale);
  return v;
}

double dot(const float* a, const float* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

}  // namespace hg::testing
