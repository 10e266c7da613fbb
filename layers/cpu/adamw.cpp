#include "layers/adamw.h"

#include <cmath>

#include "core/parallel_for.h"

namespace hg {

void adamw_step(float* theta, const float* g, float* m, float* v, int64_t n, const AdamWScalars& k,
                bool decay) {
  const float b1 = k.beta1, b2 = k.beta2, step_size = k.step_size, sqrt_bias2 = k.sqrt_bias2,
              eps = k.eps;
  const float factor = decay ? k.decay_factor : 1.0f;
  parallel_for(n, [&](int64_t i) {
    theta[i] *= factor;
    m[i] += (1.0f - b1) * (g[i] - m[i]);  // torch's lerp_
    v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
    theta[i] -= step_size * m[i] / (std::sqrt(v[i]) / sqrt_bias2 + eps);
  });
}

}  // namespace hg
