#include "trainer/train_step.h"

#include <cmath>
#include <utility>

#include "core/gemm.h"
#include "core/random.h"
#include "trainer/optimizer.h"

namespace hg {

StepContext make_step_context(const Config& config, int64_t s) {
  StepContext ctx;
  ctx.step = s;
  ctx.seed = config.train.seed;
  ctx.dropout = config.model.dropout;
  ctx.loss_scale =
      static_cast<float>(1.0 / (static_cast<double>(config.train.batch) * config.train.seq_len));
  return ctx;
}

std::vector<int> step_granularities(const Config& config, int64_t s) {
  const int G = config.model.submodels();
  if (config.train.matformer == Matformer::Joint) {
    std::vector<int> all(G);
    for (int g = 0; g < G; ++g) all[g] = g;
    return all;
  }
  if (config.train.matformer == Matformer::Sample) {
    uint64_t bits = bits64_at(random_key(config.train.seed, RandomPurpose::Granularity),
                              counter_of(0, static_cast<uint64_t>(s)));
    return {static_cast<int>(bits % static_cast<uint64_t>(G))};
  }
  return {-1};
}

WeightCopiesScope step_weight_copies(const ParamStore& store) {
  std::vector<std::pair<const float*, int64_t>> weights;
  if (store.backend().device() == Device::Cpu)  // only the CPU's products round on the host
    for (const auto& [name, p] : store.all())
      if (p.value.numel() > 0) weights.emplace_back(p.value.data(), p.value.numel());
  return WeightCopiesScope(weights);
}

std::vector<double> accumulate_gradients(StageModel& model, const StepContext& ctx,
                                         const std::vector<TokenBatch>& micro_batches,
                                         const std::vector<int>& granularities,
                                         const std::vector<SubmodelWidths>& widths) {
  model.params().zero_grads();
  const WeightCopiesScope weight_copies = step_weight_copies(model.params());
  std::vector<double> loss_sums(granularities.size(), 0.0);
  int64_t slot_id = 0;
  for (const TokenBatch& mb : micro_batches) {
    for (size_t v = 0; v < granularities.size(); ++v) {
      Slot slot;
      slot.id = slot_id++;
      slot.ctx = &ctx;
      slot.tokens = mb.tokens;
      slot.batch = mb.sequences;
      slot.first_sample = mb.first_sample;
      slot.widths = granularities[v] < 0 ? nullptr : &widths[granularities[v]];
      Tensor none, out, din;
      model.forward(slot, none, out);
      model.backward(slot, none, din);
      loss_sums[v] += slot.loss_sum;
    }
  }
  return loss_sums;
}

void fill_step_losses(StepMetrics& metrics, const std::vector<double>& loss_sums,
                      const std::vector<int>& granularities, const ModelConfig& model,
                      double tokens_in_step) {
  metrics.loss = 0;
  metrics.losses.clear();
  // bpc is the full width's: the widest sub-model trained this step (the full model when listed),
  // ordered by FFN granularity, then head granularity.
  auto order = [&](size_t v) {
    return std::pair(model.ffn_granularity(granularities[v]),
                     model.head_granularity(granularities[v]));
  };
  size_t widest = 0;
  for (size_t v = 0; v < granularities.size(); ++v) {
    double mean = loss_sums[v] / tokens_in_step;
    metrics.loss += mean;
    if (granularities.size() > 1) metrics.losses.push_back(mean);
    if (granularities[v] >= 0 && granularities[widest] >= 0 && order(v) < order(widest)) widest = v;
  }
  metrics.bpc = loss_sums[widest] / tokens_in_step / std::log(2.0);
  if (granularities.size() == 1 && granularities[0] >= 0 && model.submodels() > 1) {
    metrics.granularity = model.ffn_granularity(granularities[0]);
    if (model.head_granularities.size() > 1)
      metrics.head_granularity = model.head_granularity(granularities[0]);
  }
}

void apply_update(ParamStore& store, const TrainConfig& train, int64_t s, double norm,
                  StepMetrics& metrics) {
  metrics.step = s + 1;
  metrics.grad_norm = norm;
  metrics.lr = learning_rate(train, s);
  clip_gradients(store, norm, train.grad_clip);
  adamw_update(store, train, s + 1, metrics.lr);
}

StepMetrics train_step(StageModel& model, const Config& config, int64_t s,
                       const std::vector<TokenBatch>& micro_batches) {
  const double tokens = static_cast<double>(config.train.batch) * config.train.seq_len;
  const StepContext ctx = make_step_context(config, s);
  auto granularities = step_granularities(config, s);
  auto widths = submodel_widths(config.model);
  auto loss_sums = accumulate_gradients(model, ctx, micro_batches, granularities, widths);
  StepMetrics metrics;
  fill_step_losses(metrics, loss_sums, granularities, config.model, tokens);
  apply_update(model.params(), config.train, s, std::sqrt(grad_sum_squares(model.params())),
               metrics);
  return metrics;
}

double evaluate_loss(StageModel& model, const TokenBatch& batch, const SubmodelWidths* widths,
                     Tensor* logits) {
  StepContext ctx;  // no dropout, no gradients
  Slot slot;
  slot.ctx = &ctx;
  slot.tokens = batch.tokens;
  slot.batch = batch.sequences;
  slot.first_sample = batch.first_sample;
  slot.widths = widths;
  slot.logits = logits;
  Tensor none, out;
  model.forward(slot, none, out);
  model.release(slot.id);
  return slot.loss_sum / (static_cast<double>(batch.sequences) * model.seq_len());
}

}  // namespace hg
