// Generation (trainer/sampling.h, issue 17): cached incremental decoding against the model re-run
// on the window for every token, over 2·seq_len tokens (so the window restarts), on tiny models
// of every option: the logits of every step agree within 1e-5 relative and the tokens are the same.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

#include "model/stage_model.h"
#include "tests/support/tiny_models.h"
#include "trainer/sampling.h"
#include "trainer/train_step.h"

namespace hg {
namespace {

using testing::TinyModel;

class SamplingTest : public ::testing::TestWithParam<TinyModel> {};

struct Generation {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<float> logits;  // [steps, num_samples, V]
};

Generation run(StageModel& model, const std::vector<int32_t>& prompt, SampleOptions o, bool cache) {
  o.cache = cache;
  Generation g;
  const int64_t row = static_cast<int64_t>(o.num_samples) * model.config().vocab_size;
  g.tokens = generate(model, prompt, o, [&](int, const float* logits) {
    g.logits.insert(g.logits.end(), logits, logits + row);
  });
  return g;
}

TEST_P(SamplingTest, CachedAndUncachedGenerationsAgreeOverTwoWindows) {
  Config config = testing::tiny_config(GetParam().ini);
  const int L = config.train.seq_len, V = config.model.vocab_size;
  StageModel model(config.model, L);
  testing::randomise(model.params(), 3);
  const std::vector<int32_t> prompt = {1, 7, 3};
  SampleOptions greedy;
  greedy.length = 2 * L;
  greedy.temperature = 0;
  SampleOptions batch = greedy;  // three continuations drawn at temperature 1, top-k 5
  batch.temperature = 1.0;
  batch.top_k = 5;
  batch.num_samples = 3;
  batch.seed = 17;
  SampleOptions narrow = batch;  // MatFormer: the nested half width of every block
  narrow.widths = full_widths(config.model);
  for (int& w : narrow.widths->ffn) w /= 2;
  // A prompt longer than seq_len starts at its last seq_len/2 tokens.
  const std::vector<int32_t> long_prompt = testing::random_tokens(1, 2 * L + 2, V, 4);
  double worst = 0;
  for (const auto& [o, start] : {std::pair(greedy, &prompt), std::pair(batch, &prompt),
                                 std::pair(narrow, &prompt), std::pair(greedy, &long_prompt)}) {
    const Generation cached = run(model, *start, o, true);
    const Generation uncached = run(model, *start, o, false);
    EXPECT_EQ(cached.tokens, uncached.tokens) << GetParam().name << " samples " << o.num_samples;
    ASSERT_EQ(cached.logits.size(), uncached.logits.size());
    const double diff =
        testing::max_row_relative_difference(cached.logits.data(), uncached.logits.data(),
                                             static_cast<int64_t>(cached.logits.size()) / V, V);
    EXPECT_LT(diff, 1e-5) << GetParam().name << " samples " << o.num_samples;
    worst = std::max(worst, diff);
    for (const auto& sample : cached.tokens) EXPECT_EQ(sample.size(), static_cast<size_t>(2 * L));
  }
  std::printf("%s: max relative logit difference over 2L tokens %.3g\n", GetParam().name.c_str(),
              worst);
}

TEST(Sampling, TheWindowGrowsToSeqLenThenRestartsAtItsLastHalf) {
  EXPECT_EQ(window_start(5, 0, 16), 0);
  EXPECT_EQ(window_start(16, 0, 16), 0);
  EXPECT_EQ(window_start(17, 0, 16), 9);  // the last 8 tokens
  EXPECT_EQ(window_start(25, 9, 16), 9);
  EXPECT_EQ(window_start(26, 9, 16), 18);
  EXPECT_EQ(window_start(100, 0, 16), 92);  // a long prompt
  EXPECT_EQ(window_start(3, 0, 1), 2);      // seq_len 1: one token
}

INSTANTIATE_TEST_SUITE_P(EveryOption, SamplingTest,
                         ::testing::ValuesIn(testing::generation_models()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace hg
