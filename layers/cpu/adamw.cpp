#include "layers/adamw.h"

#include <cmath>

#include "core/parallel_for.h"

namespace hg {

namespace {

// One span of elements: the formula of core/adamw_scalars.h. Restrict pointers and scalar locals
// let the loop vectorise (the lambda over shared references it replaces reloaded every scalar
// per element and ran scalar). The two fused multiply-adds are written out and the file compiles
// with -ffp-contract=off (layers/CMakeLists.txt), so the rounding is the code's, not the
// vectoriser's choice: the same bits as the scalar loop GCC made of the formula before.
void adamw_span(float* __restrict theta, const float* __restrict g, float* __restrict m,
                float* __restrict v, int64_t n, float b1, float b2, float step_size,
                float sqrt_bias2, float eps, float factor) {
  for (int64_t i = 0; i < n; ++i) {
    theta[i] *= factor;
    m[i] = std::fma(1.0f - b1, g[i] - m[i], m[i]);  // torch's lerp_: m + (1 − β1)(g − m)
    v[i] = std::fma(b2, v[i], (1.0f - b2) * g[i] * g[i]);
    theta[i] -= step_size * m[i] / (std::sqrt(v[i]) / sqrt_bias2 + eps);
  }
}

}  // namespace

void adamw_step(float* theta, const float* g, float* m, float* v, int64_t n, const AdamWScalars& k,
                bool decay) {
  const float factor = decay ? k.decay_factor : 1.0f;
  constexpr int64_t kSpan = 4096;  // elements per task: 64 KiB of the four arrays together
  parallel_for((n + kSpan - 1) / kSpan, [&](int64_t s) {
    const int64_t i0 = s * kSpan, len = n - i0 < kSpan ? n - i0 : kSpan;
    adamw_span(theta + i0, g + i0, m + i0, v + i0, len, k.beta1, k.beta2, k.step_size, k.sqrt_bias2,
               k.eps, factor);
  });
}

}  // namespace hg
