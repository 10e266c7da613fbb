// Cached incremental decoding (model/decoder.h, issue 17) against the training forward on tiny
// models of every option: the logits of every position, appended in prefills and steps of every
// size, and causality of the decoder's prefill.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>

#include "model/decoder.h"
#include "model/stage_model.h"
#include "tests/support/tiny_models.h"
#include "trainer/train_step.h"

namespace hg {
namespace {

using testing::TinyModel;

class DecoderTest : public ::testing::TestWithParam<TinyModel> {};

// The training forward's logits of `tokens` [B, L+1] at `widths` (null = full): [B, L, V].
Tensor training_logits(StageModel& model, std::vector<int32_t>& tokens, int64_t B,
                       const SubmodelWidths* widths) {
  Tensor logits;
  evaluate_loss(model, {tokens.data(), B, 0}, widths, &logits);
  return logits;
}

// Decodes tokens [B, L+1] (inputs: the first L of each row) appending `steps` tokens at a time
// (the last entry repeats until the window is full): logits [B, L, V].
Tensor decoded_logits(Decoder& decoder, const std::vector<int32_t>& tokens, int64_t B, int L, int V,
                      const std::vector<int>& steps) {
  Tensor all({B, L, V});
  decoder.reset();
  Tensor logits;
  for (size_t s = 0; decoder.position() < L; s = std::min(s + 1, steps.size() - 1)) {
    const int64_t p0 = decoder.position(), n = std::min<int64_t>(steps[s], L - p0);
    std::vector<int32_t> chunk(B * n);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < n; ++i) chunk[b * n + i] = tokens[b * (L + 1) + p0 + i];
    decoder.append(chunk.data(), n, logits);
    for (int64_t b = 0; b < B; ++b)
      std::copy(logits.data() + b * n * V, logits.data() + (b + 1) * n * V,
                all.data() + (b * L + p0) * V);
  }
  return all;
}

// The sub-models the decoder is tested at: full, the nested half FFN width (MatFormer), Mix'n'Match
// (a different FFN width per block), and with nested heads (§9.6) half the heads, then a
// different head count and FFN width per block.
std::vector<std::optional<SubmodelWidths>> widths_to_test(const ModelConfig& m) {
  std::vector<std::optional<SubmodelWidths>> all = {std::nullopt};
  SubmodelWidths half = full_widths(m), mixed = full_widths(m);
  for (int& w : half.ffn) w /= 2;
  all.push_back(half);
  for (int b = 0; b < m.total_stack_blocks(); ++b) mixed.ffn[b] = b % 2 ? m.ffn - 3 : m.ffn / 4;
  all.push_back(mixed);
  if (m.heads < 2) return all;
  SubmodelWidths half_heads = full_widths(m);
  for (int& h : half_heads.heads) h /= 2;
  all.push_back(half_heads);
  for (int b = 0; b < m.total_stack_blocks(); ++b) mixed.heads[b] = 1 + b % m.heads;
  all.push_back(mixed);
  return all;
}

TEST_P(DecoderTest, LogitsOfEveryPositionMatchTheTrainingForward) {
  Config config = testing::tiny_config(GetParam().ini);
  const int L = config.train.seq_len, V = config.model.vocab_size;
  const int64_t B = 2;
  StageModel model(config.model, L);
  testing::randomise(model.params(), 5);
  auto tokens = testing::random_tokens(B, L, V, 9);
  // Prefills of 5 and 1 rows, steps of 1, 3 and 2 (crossing shortened rows and chunks), a
  // one-token-at-a-time run, and the whole window in one prefill.
  const std::vector<std::vector<int>> schedules = {{5, 1, 1, 3, 2, 1}, {1}, {3}, {L}};
  double worst = 0;
  int case_index = 0;
  for (const std::optional<SubmodelWidths>& widths : widths_to_test(config.model)) {
    const SubmodelWidths* active = widths ? &*widths : nullptr;
    const Tensor expected = training_logits(model, tokens, B, active);
    Decoder decoder(model, B, active);
    ++case_index;
    for (const auto& steps : schedules) {
      const Tensor got = decoded_logits(decoder, tokens, B, L, V, steps);
      const double diff =
          testing::max_row_relative_difference(got.data(), expected.data(), B * L, V);
      EXPECT_LT(diff, 1e-5) << GetParam().name << " widths case " << case_index << " first step "
                            << steps[0];
      worst = std::max(worst, diff);
    }
  }
  std::printf("%s: max relative logit difference %.3g\n", GetParam().name.c_str(), worst);
}

// Changing token t changes no logit of a row before t in the decoder's prefill (bit for bit, as
// in the training forward: masked keys get probability exactly 0), and changes some at or after.
TEST_P(DecoderTest, PrefillIsCausal) {
  Config config = testing::tiny_config(GetParam().ini);
  const int L = config.train.seq_len, V = config.model.vocab_size;
  StageModel model(config.model, L);
  testing::randomise(model.params(), 5);
  auto tokens = testing::random_tokens(1, L, V, 9);
  Decoder decoder(model, 1);
  const Tensor base = decoded_logits(decoder, tokens, 1, L, V, {L});
  for (int t = 0; t < L; ++t) {
    auto changed = tokens;
    changed[t] = (changed[t] + 5) % V;
    const Tensor logits = decoded_logits(decoder, changed, 1, L, V, {L});
    for (int64_t i = 0; i < static_cast<int64_t>(t) * V; ++i)
      ASSERT_EQ(logits[i], base[i])
          << GetParam().name << ": token " << t << " changed row " << i / V;
    double diff = 0;
    for (int64_t i = static_cast<int64_t>(t) * V; i < static_cast<int64_t>(L) * V; ++i)
      diff = std::max(diff, static_cast<double>(std::fabs(logits[i] - base[i])));
    EXPECT_GT(diff, 1e-6) << GetParam().name << ": token " << t << " changed no later logit";
  }
}

TEST(Decoder, RefusesAWindowLongerThanTheTrainingSequence) {
  Config config = testing::tiny_config(testing::tiny_models().at(0).ini);
  StageModel model(config.model, config.train.seq_len);
  Decoder decoder(model, 1);
  std::vector<int32_t> tokens(config.train.seq_len + 1, 1);
  Tensor logits;
  EXPECT_THROW(decoder.append(tokens.data(), config.train.seq_len + 1, logits), std::exception);
  decoder.append(tokens.data(), config.train.seq_len, logits);
  EXPECT_THROW(decoder.append(tokens.data(), 1, logits), std::exception);
  decoder.reset();
  decoder.append(tokens.data(), 1, logits);
  EXPECT_EQ(decoder.position(), 1);
}

INSTANTIATE_TEST_SUITE_P(EveryOption, DecoderTest,
                         ::testing::ValuesIn(testing::generation_models()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace hg
