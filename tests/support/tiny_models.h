// Tiny model configurations covering every option of ARCHITECTURE.md §1, for whole-model tests.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "model/params.h"
#include "trainer/config.h"

namespace hg::testing {

struct TinyModel {
  std::string name;
  std::string ini;  // [model] and [train] sections
};

// Every option at least once: attention long_short/full, positions rope/none, downsample
// linear/avg, upsample linear/repeat, resampling plain/attention, activation relu2/gelu,
// dconv on/off, one and two shortening levels, a plain transformer, MatFormer granularities of
// the FFN and (nested_heads*) of the heads.
std::vector<TinyModel> tiny_models();

// tiny_models() and the combinations generation tests add: full attention without positions or
// DConv, and two levels of attention resampling with linear pooling and upsampling under
// long_short attention with RoPE.
std::vector<TinyModel> generation_models();

// The configuration of `ini` (defaults elsewhere), validated.
Config tiny_config(const std::string& ini);

// init_all(seed) plus noise of std 0.3: larger weights than the 0.02 init, so every path carries
// gradient (and every logit difference) well above float32 noise.
void randomise(ParamStore& store, uint64_t seed);

// max over the rows of max_v |a - b| / max_v |b| for logits a, b [rows, V]: the error relative to
// each row's logit scale (how generation tests compare cached against uncached logits).
double max_row_relative_difference(const float* a, const float* b, int64_t rows, int V);

// Deterministic tokens [sequences, seq_len + 1] in [0, vocab).
std::vector<int32_t> random_tokens(int64_t sequences, int seq_len, int vocab, uint64_t seed);

}  // namespace hg::testing
