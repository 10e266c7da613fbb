// Whole-model checks on tiny configurations of every option: finite differences of the loss
// against the backward pass, and causality of the logits.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/random.h"
#include "model/stage_model.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tiny_models.h"
#include "trainer/train_step.h"

namespace hg {
namespace {

using testing::TinyModel;

class TinyModelTest : public ::testing::TestWithParam<TinyModel> {};

using testing::randomise;

TEST_P(TinyModelTest, LossGradientMatchesFiniteDifferences) {
  Config config = testing::tiny_config(GetParam().ini);
  const int L = config.train.seq_len, B = config.train.batch;
  StageModel model(config.model, L);
  randomise(model.params(), 7);
  auto tokens = testing::random_tokens(B, L, config.model.vocab_size, 3);
  TokenBatch batch{tokens.data(), B, 0};
  // Half-width FFNs on the nested configurations: the prefix must carry the whole gradient.
  auto widths = submodel_widths(config.model);
  const SubmodelWidths* active = &widths.back();
  StepContext ctx;
  ctx.step = 4;
  ctx.seed = 11;
  ctx.dropout = config.model.dropout;
  ctx.loss_scale = 1.0f / (B * L);
  accumulate_gradients(model, ctx, {batch}, {static_cast<int>(widths.size()) - 1}, widths);
  // The training loss with the same dropout masks, forward only.
  auto loss = [&] {
    Slot slot;
    slot.ctx = &ctx;
    slot.tokens = tokens.data();
    slot.batch = B;
    slot.widths = active;
    Tensor none, out;
    model.forward(slot, none, out);
    model.release(slot.id);
    return slot.loss_sum / (B * L);
  };
  int checked = 0;
  for (auto& [name, p] : model.params().all()) {
    // A few entries of every tensor; relative error over them, so tiny entries do not dominate.
    double num = 0, den = 0;
    const int64_t n = p.value.numel();
    for (int64_t i : {int64_t{0}, n / 3, n / 2, n - 1}) {
      const float saved = p.value[i];
      const double eps = 1e-2;
      p.value[i] = saved + eps;
      double plus = loss();
      p.value[i] = saved - eps;
      double minus = loss();
      p.value[i] = saved;
      double fd = (plus - minus) / (2 * eps), an = p.grad[i];
      num += (fd - an) * (fd - an);
      den += an * an + fd * fd;
      ++checked;
    }
    // Relative error, with an absolute floor for true zeros: entries outside the active FFN
    // prefix, and proj/bias (a chunk softmax cannot see a bias shared by its rows), where the
    // finite difference is float32 rounding noise (~1e-5).
    EXPECT_LT(std::sqrt(num), 3e-2 * std::sqrt(den) + 2e-4) << GetParam().name << ": " << name;
  }
  EXPECT_GT(checked, 20);
}

// train.matformer joint (§1.5, §9.6): the loss is the sum of every sub-model's loss, so its
// gradient is the sum of each sub-model's gradient computed alone.
TEST_P(TinyModelTest, JointGradientsAreTheSumOfEachSubmodels) {
  Config config = testing::tiny_config(GetParam().ini);
  const int L = config.train.seq_len, B = config.train.batch, G = config.model.submodels();
  ASSERT_GE(G, 2) << "every tiny model nests at least the FFN";
  StageModel model(config.model, L);
  randomise(model.params(), 7);
  auto tokens = testing::random_tokens(B, L, config.model.vocab_size, 3);
  const auto widths = submodel_widths(config.model);
  StepContext ctx;
  ctx.step = 2;
  ctx.seed = 5;
  ctx.dropout = config.model.dropout;
  ctx.loss_scale = 1.0f / (B * L);
  std::vector<int> all(G);
  for (int i = 0; i < G; ++i) all[i] = i;
  std::map<std::string, std::vector<double>> sum;
  for (int i = 0; i < G; ++i) {
    accumulate_gradients(model, ctx, {{tokens.data(), B, 0}}, {i}, widths);
    for (auto& [name, p] : model.params().all()) {
      auto& s = sum[name];
      s.resize(p.grad.numel());
      for (int64_t k = 0; k < p.grad.numel(); ++k) s[k] += p.grad[k];
    }
  }
  accumulate_gradients(model, ctx, {{tokens.data(), B, 0}}, all, widths);
  for (auto& [name, p] : model.params().all()) {
    double err = 0, scale = 1e-6;
    for (int64_t k = 0; k < p.grad.numel(); ++k) {
      err = std::max(err, std::fabs(p.grad[k] - sum[name][k]));
      scale = std::max(scale, std::fabs(sum[name][k]));
    }
    // float32 accumulation in another order: a few ulps of the tensor's largest entry.
    EXPECT_LT(err, 1e-5 * scale) << GetParam().name << ": " << name;
  }
}

TEST_P(TinyModelTest, LogitsAreCausal) {
  Config config = testing::tiny_config(GetParam().ini);
  const int L = config.train.seq_len, V = config.model.vocab_size;
  StageModel model(config.model, L);
  randomise(model.params(), 5);
  auto tokens = testing::random_tokens(1, L, V, 9);
  Tensor base_logits;
  evaluate_loss(model, {tokens.data(), 1, 0}, nullptr, &base_logits);
  for (int t = 0; t < L; ++t) {  // every position: a pooled row that sees the future shows here
    auto changed = tokens;
    changed[t] = (changed[t] + 5) % V;
    Tensor logits;
    evaluate_loss(model, {changed.data(), 1, 0}, nullptr, &logits);
    for (int64_t i = 0; i < static_cast<int64_t>(t) * V; ++i)
      ASSERT_EQ(logits[i], base_logits[i]) << GetParam().name << ": token " << t
                                           << " changed logit row " << i / V;
    double diff = 0;
    for (int64_t i = static_cast<int64_t>(t) * V; i < static_cast<int64_t>(L) * V; ++i)
      diff = std::max(diff, static_cast<double>(std::fabs(logits[i] - base_logits[i])));
    EXPECT_GT(diff, 1e-6) << GetParam().name << ": token " << t << " changed no later logit";
  }
}

INSTANTIATE_TEST_SUITE_P(EveryOption, TinyModelTest, ::testing::ValuesIn(testing::tiny_models()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace hg
