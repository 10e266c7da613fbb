// Comparing an emulated kernel's output with the CPU backend's: the measured worst difference is
// printed (docs/cuda.md quotes these lines), then checked like tests/support's expect_close.
#pragma once
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "tests/support/backends.h"

namespace hg::testing {

inline void expect_matches(const std::string& what, const std::vector<float>& got,
                           const std::vector<float>& want, double atol, double rtol) {
  double worst = 0.0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i)
    if (!std::isnan(want[i])) worst = std::fmax(worst, std::fabs(double(got[i]) - want[i]));
  std::printf("[ measured ] %s: max |emulated - cpu| = %.3g (atol %.3g, rtol %.3g)\n", what.c_str(),
              worst, atol, rtol);
  expect_close(what, got, want, atol, rtol);
}

// Bit for bit (NaN where NaN).
inline void expect_bits_equal(const std::string& what, const std::vector<float>& got,
                              const std::vector<float>& want) {
  expect_matches(what, got, want, 0.0, 0.0);
}

}  // namespace hg::testing
