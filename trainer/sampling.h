// Text generation from a trained model (`hourglass sample`, ARCHITECTURE.md §9.4): cached
// incremental decoding (model/decoder.h) by default, or the model re-run on the window for every
// token. Both read the same window of the context (window_start), so they draw the same tokens
// from the same logits, up to float rounding.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "model/stage_model.h"

namespace hg {

struct SampleOptions {
  int length = 200;             // tokens generated per sample
  double temperature = 0.8;     // 0: greedy (the most likely token)
  int top_k = 0;                // sample among the k most likely; 0: among all
  uint64_t seed = 1;            // sample n's token i draws Philox (Generate, seed) at (n, i)
  int num_samples = 1;          // continuations of the prompt decoded together, as one batch
  bool cache = true;            // false: a forward over the window for every token
  std::optional<SubmodelWidths> widths;  // MatFormer sub-model (§1.5, §9.6); none = full
};

// The first token of the window the model reads when the context holds `length` tokens and the
// current window starts at `start` (docs/DESIGN.md, "Sampling"): the window grows with the context
// until it would pass seq_len tokens, the longest the model was trained on (its positions, RoPE
// angles and chunk counts stop there); it then restarts at the last seq_len/2 tokens, which the
// decoder prefills in one pass. A long prompt starts that way too.
int64_t window_start(int64_t length, int64_t start, int seq_len);

// Called before each step's draw with the logits [num_samples, V] of the next tokens.
using StepLogits = std::function<void(int step, const float* logits)>;

// num_samples continuations of `prompt` (token ids, at least one), `length` tokens each.
std::vector<std::vector<int32_t>> generate(StageModel& model, const std::vector<int32_t>& prompt,
                                           const SampleOptions& options,
                                           const StepLogits& observe = {});

}  // namespace hg
