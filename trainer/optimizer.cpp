#include "trainer/optimizer.h"

#include <cmath>
#include <vector>

#include "core/adamw_scalars.h"

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
  std::vector<Backend::Span> spans;
  for (const auto& [name, p] : store.all())
    if (p.slice.sharded() || count_replicated)
      spans.push_back({p.grad.data() + p.shard_offset, p.shard_numel()});
  std::vector<double> sums(spans.size());
  store.backend().sum_squares_each(spans, sums.data());
  double s = 0;
  for (const double x : sums) s += x;  // in the parameters' order, as before
  return s;
}

double clip_gradients(ParamStore& store, double norm, double grad_clip) {
  if (grad_clip <= 0) return 1.0;
  double factor = grad_clip / (norm + 1e-6);
  if (factor >= 1.0) return 1.0;
  for (auto& [name, p] : store.all())
    store.backend().scale(p.grad.data() + p.shard_offset, static_cast<float>(factor),
                          p.shard_numel());
  return factor;
}

void adamw_update(ParamStore& store, const TrainConfig& train, int64_t t, double lr) {
  const AdamWScalars k =
      adamw_scalars(train.beta1, train.beta2, train.eps, train.weight_decay, t, lr);
  for (auto& [name, p] : store.all())
    store.backend().adamw_step(p.value.data() + p.shard_offset, p.grad.data() + p.shard_offset,
                               p.exp_avg.data(), p.exp_avg_sq.data(), p.shard_numel(), k, p.decay);
}

}  // namespace hg
