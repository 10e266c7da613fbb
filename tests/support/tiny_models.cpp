#include "tests/support/tiny_models.h"

#include <algorithm>
#include <cmath>

#include "core/random.h"
#include "tests/support/gradcheck.h"

namespace hg::testing {

namespace {

// d 8, 2 heads (e 4), ffn 16, vocab 16, L 16, window 4, chunk 4, rank 2; `extra` adds keys.
// `width` replaces d and the heads.
TinyModel model(const std::string& name, const std::string& extra,
                const std::string& width = "d_model = 8\nheads = 2\n") {
  const std::string base = "[model]\nvocab_size = 16\n" + width +
                           "ffn = 16\nwindow = 4\nchunk = 4\nrank = 2\nffn_granularities = 1,2\n";
  const std::string train = "[train]\nseq_len = 16\nbatch = 2\nmicro_batch = 2\n";
  return TinyModel{name, base + extra + train};
}

}  // namespace

std::vector<TinyModel> tiny_models() {
  return {
      model("base", "hierarchy = 1@1 1@2 1@1\n"),
      model("full_attention", "hierarchy = 1@1 1@2 1@1\nattention = full\n"),
      model("no_positions", "hierarchy = 1@1 1@2 1@1\npositions = none\n"),
      model("avg_repeat", "hierarchy = 1@1 1@2 1@1\ndownsample = avg\nupsample = repeat\n"),
      model("attention_resampling", "hierarchy = 1@1 1@2 1@1\nresampling = attention\n"),
      model("gelu_no_dconv", "hierarchy = 1@1 1@2 1@1\nactivation = gelu\ndconv = false\n"),
      model("two_levels", "hierarchy = 1@1 1@2 1@4 1@2 1@1\n"),
      model("two_levels_attention",
            "hierarchy = 1@1 0@2 1@4 1@2 0@1\nresampling = attention\n"
            "downsample = avg\nupsample = repeat\nattention = full\n"),
      model("plain_transformer", "hierarchy = 2@1\n"),
      model("dropout", "hierarchy = 1@1 1@2 1@1\ndropout = 0.1\n"),
      // MatFormer across heads (§9.6): 4 heads of 4, sub-models (F, 4 heads) and (F/2, 2 heads).
      model("nested_heads", "hierarchy = 1@1 1@2 1@1\nhead_granularities = 1,2\n",
            "d_model = 16\nheads = 4\n"),
      model("nested_heads_full_no_dconv",
            "hierarchy = 1@1 1@2 1@1\nhead_granularities = 1,4\nattention = full\n"
            "dconv = false\n",
            "d_model = 16\nheads = 4\n"),
  };
}

std::vector<TinyModel> generation_models() {
  std::vector<TinyModel> models = tiny_models();
  models.push_back(model("full_no_positions_no_dconv",
                         "hierarchy = 1@1 1@2 1@1\nattention = full\npositions = none\n"
                         "dconv = false\n"));
  models.push_back(model("two_levels_attention_linear",
                         "hierarchy = 1@1 1@2 1@4 1@2 1@1\nresampling = attention\n"));
  return models;
}

Config tiny_config(const std::string& ini) { return config_from_ini(ini); }

void randomise(ParamStore& store, uint64_t seed) {
  store.init_all(seed);
  for (auto& [name, p] : store.all()) {
    std::vector<float> noise = random_vector(p.value.numel(), seed + hash_name(name), 0.3f);
    for (int64_t i = 0; i < p.value.numel(); ++i) p.value[i] += noise[i];
  }
}

double max_row_relative_difference(const float* a, const float* b, int64_t rows, int V) {
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double diff = 0, scale = 0;
    for (int v = 0; v < V; ++v) {
      diff = std::max(diff, static_cast<double>(std::fabs(a[r * V + v] - b[r * V + v])));
      scale = std::max(scale, static_cast<double>(std::fabs(b[r * V + v])));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

std::vector<int32_t> random_tokens(int64_t sequences, int seq_len, int vocab, uint64_t seed) {
  std::vector<int32_t> tokens(sequences * (seq_len + 1));
  uint64_t key = random_key(seed, RandomPurpose::Sample);
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<int32_t>(philox4x32(key, counter_of(seed, i))[0] % vocab);
  return tokens;
}

}  // namespace hg::testing
