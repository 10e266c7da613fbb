#include "trainer/optimizer.h"

#include <cmath>

#include "core/adamw_scalars.h"
#include "core/elementwise.h"
#include "core/parallel_for.h"

namespace hg {

double learning_rate(const TrainConfig& train, int64_t s) {
  if (s < train.warmup) return train.lr * static_cast<double>(s + 1) / train.warmup;
  const double lo = train.min_lr_ratio * train.lr;
  if (train.steps <= train.warmup) return lo;
  double rho = std::min(1.0, static_cast<double>(s - train.warmup) / (train.steps - train.warmup));
  return lo + 0.5 * (1.0 + std::cos(M_PI * rho)) * (train.lr - lo);
}

double grad_sum_squares(const ParamStore& store) {
  const bool count_replicated = store.tensor_parallel().rank == 0;
  double s = 0;
  for (const auto& [name, p] : store.all())
    if (p.slice.sharded() || count_replicated) s += sum_squares(p.grad.data(), p.grad.numel());
  return s;
}

double clip_gradients(ParamStore& store, double norm, double grad_clip) {
  if (grad_clip <= 0) return 1.0;
  double factor = grad_clip / (norm + 1e-6);
  if (factor >= 1.0) return 1.0;
  for (auto& [name, p] : store.all())
    scale_inplace(p.grad.data(), static_cast<float>(factor), p.grad.numel());
  return factor;
}

void adamw_update(ParamStore& store, const TrainConfig& train, int64_t t, double lr) {
  const AdamWScalars k =
      adamw_scalars(train.beta1, train.beta2, train.eps, train.weight_decay, t, lr);
  const float b1 = k.beta1, b2 = k.beta2, step_size = k.step_size, sqrt_bias2 = k.sqrt_bias2,
              eps = k.eps;
  for (auto& [name, p] : store.all()) {
    float* theta = p.value.data();
    const float* g = p.grad.data();
    float* m = p.exp_avg.data();
    float* v = p.exp_avg_sq.data();
    const float decay = p.decay ? k.decay_factor : 1.0f;
    parallel_for(p.value.numel(), [&](int64_t i) {
      theta[i] *= decay;
      m[i] += (1.0f - b1) * (g[i] - m[i]);  // torch's lerp_
      v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
      theta[i] -= step_size * m[i] / (std::sqrt(v[i]) / sqrt_bias2 + eps);
    });
  }
}

}  // namespace hg
