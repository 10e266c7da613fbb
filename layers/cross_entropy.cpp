// The head's loss (§1.1): CrossEntropy(logits[t], target[t]) in nats, max-shifted and with the
// exponential sum in double, so that V in the tens of thousands loses nothing to rounding.
#include "layers/cross_entropy.h"

#include <cmath>
#include <string>

#include "core/error.h"
#include "core/parallel_for.h"

namespace hg {

namespace {

// Validated before the parallel loops: an exception must not leave an OpenMP region.
void check_targets(const int32_t* targets, int64_t rows, int V) {
  for (int64_t r = 0; r < rows; ++r)
    require(targets[r] >= 0 && targets[r] < V,
            "cross_entropy: target " + std::to_string(targets[r]) + " at row " + std::to_string(r) +
                " outside the vocabulary [0, " + std::to_string(V) + ")");
}

inline float row_max(const float* x, int V) {
  float m = x[0];
  for (int i = 1; i < V; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

}  // namespace

void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t rows,
                           int V) {
  check_targets(targets, rows, V);
  parallel_for(rows, [&](int64_t r) {
    const float* x = logits + r * V;
    const float m = row_max(x, V);
    double sum = 0.0;
    for (int i = 0; i < V; ++i) sum += std::exp(static_cast<double>(x[i]) - m);
    // loss = log Σ exp(x) - x[target] = m + log Σ exp(x - m) - x[target]
    losses[r] = static_cast<float>(std::log(sum) + (static_cast<double>(m) - x[targets[r]]));
  });
}

void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            float scale, int64_t rows, int V) {
  check_targets(targets, rows, V);
  parallel_for(rows, [&](int64_t r) {
    const float* x = logits + r * V;
    float* g = dlogits + r * V;
    const float m = row_max(x, V);
    double sum = 0.0;
    for (int i = 0; i < V; ++i) {
      const double ex = std::exp(static_cast<double>(x[i]) - m);
      g[i] = static_cast<float>(ex);  // ≤ 1: exp(x - m) in float cannot overflow
      sum += ex;
    }
    const float k = static_cast<float>(scale / sum);
    for (int i = 0; i < V; ++i) g[i] *= k;
    g[targets[r]] -= scale;
  });
}

}  // namespace hg
