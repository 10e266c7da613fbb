// Finite-difference checks for the backward passes.
//
// Usage: make the loss a scalar of the layer's output (e.g. sum(out · R) with a fixed random R),
// run forward + backward once to get analytic gradients, then call expect_gradients_match for
// each input/parameter buffer. `loss` must recompute the loss from the buffers' current contents
// (forward only); the check perturbs x[i] by ±eps in place and restores it.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hg::testing {

struct GradCheckOptions {
  double eps = 1e-2;    // float32 forward: a large step keeps rounding noise below the signal
  double rtol = 2e-2;   // relative tolerance on max(|fd|, |analytic|)
  double atol = 2e-4;   // absolute floor for tiny gradients
  int max_checks = 64;  // indices checked (spread over the buffer, always including 0 and n-1)
};

// Returns the number of mismatching indices (and records GoogleTest failures naming them).
int expect_gradients_match(const std::string& what, const std::function<double()>& loss, float* x,
                           const float* analytic, int64_t n, GradCheckOptions options = {});

// Deterministic pseudo-random fill in [-scale, scale) for test inputs.
void fill_uniform(float* x, int64_t n, uint64_t seed, float scale = 1.0f);
std::vector<float> random_vector(int64_t n, uint64_t seed, float scale = 1.0f);

// sum_i a[i]·b[i] in double.
double dot(const float* a, const float* b, int64_t n);

}  // namespace hg::testing
