// The head's loss (§1.1): CrossEntropy(logits[t], target[t]) in nats, max-shifted and with the
// exponential sum in double, so that V in the tens of thousands loses nothing to rounding.
#include "layers/cross_entropy.h"

#include <cmath>
#include <string>

#include "core/error.h"
#include "core/parallel_for.h"
#include "layers/cpu/fast_exp.h"

namespace hg {

namespace {

inline float row_max(const float* x, int V) {
  float m = x[0];
  for (int i = 1; i < V; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// Σ exp(x[i] - m) over a row, and the terms themselves into `terms` when it is not null. Each
// exp is a float exp_approx (within 2 ulp: the loop vectorises, libm's double exp did not);
// the sum is kept in double, in a fixed lane order, so V in the tens of thousands loses nothing
// to rounding and the result does not depend on the ISA.
constexpr int kLanes = 16;

inline double exp_sum(const float* x, int V, float m, float* terms) {
  double acc[kLanes] = {};
  float ex[kLanes];
  int i = 0;
  for (; i + kLanes <= V; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) ex[l] = exp_approx(x[i + l] - m);
    for (int l = 0; l < kLanes; ++l) acc[l] += ex[l];
    if (terms != nullptr)
      for (int l = 0; l < kLanes; ++l) terms[i + l] = ex[l];
  }
  for (int l = 0; i < V; ++i, ++l) {
    const float e = exp_approx(x[i] - m);
    acc[l] += e;
    if (terms != nullptr) terms[i] = e;
  }
  double sum = 0.0;
  for (int l = 0; l < kLanes; ++l) sum += acc[l];
  return sum;
}

}  // namespace

void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t rows,
                           int V) {
  check_targets_in_vocabulary(targets, rows, V);
  parallel_for(rows, [&](int64_t r) {
    const float* x = logits + r * V;
    const float m = row_max(x, V);
    const double sum = exp_sum(x, V, m, nullptr);
    // loss = log Σ exp(x) - x[target] = m + log Σ exp(x - m) - x[target]
    losses[r] = static_cast<float>(std::log(sum) + (static_cast<double>(m) - x[targets[r]]));
  });
}

void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            float scale, int64_t rows, int V) {
  check_targets_in_vocabulary(targets, rows, V);
  parallel_for(rows, [&](int64_t r) {
    const float* x = logits + r * V;
    float* g = dlogits + r * V;  // may alias x: each x[i] is read before g[i] is written
    const float m = row_max(x, V);
    const float k = static_cast<float>(scale / exp_sum(x, V, m, g));  // g = exp(x - m) <= 1
    for (int i = 0; i < V; ++i) g[i] *= k;
    g[targets[r]] -= scale;
  });
}

}  // namespace hg
