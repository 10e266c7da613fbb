// The model's configuration (ARCHITECTURE.md §1, the [model] section of §8): what a checkpoint's
// model is, independent of how it is trained or laid out. Choice keys are enums, parsed once by
// the config room (trainer/config.cpp) from the spellings each enum declares (core/enum_names.h).
#pragma once
#include <span>
#include <string>
#include <vector>

#include "layers/activation.h"
#include "layers/attention.h"

namespace hg {

// One stack of the hierarchy string "n0@K0 n1@K1 ...": n blocks at total shortening K.
struct StackSpec {
  int blocks = 0;
  int shortening = 1;
};

// Parses and validates a hierarchy string (§1.1): odd count, K0 = 1, palindrome of K, strictly
// increasing to the middle, integer ratios. Throws UsageError naming the rule broken.
std::vector<StackSpec> parse_hierarchy(const std::string& text);

enum class Positions { Rope, None };
enum class Downsample { Linear, Avg };
enum class Upsample { Linear, Repeat };
enum class Resampling { Plain, Attention };
inline std::span<const char* const> enum_names(Positions) {
  static constexpr const char* names[] = {"rope", "none"};
  return names;
}
inline std::span<const char* const> enum_names(Downsample) {
  static constexpr const char* names[] = {"linear", "avg"};
  return names;
}
inline std::span<const char* const> enum_names(Upsample) {
  static constexpr const char* names[] = {"linear", "repeat"};
  return names;
}
inline std::span<const char* const> enum_names(Resampling) {
  static constexpr const char* names[] = {"plain", "attention"};
  return names;
}

struct ModelConfig {
  int vocab_size = 256;
  int d_model = 256;
  int heads = 4;
  int ffn = 1024;
  std::vector<int> ffn_widths;  // per stack block in forward order (extracted checkpoints); empty = all `ffn`
  std::string hierarchy = "2@1 4@3 2@1";
  std::vector<StackSpec> stacks;  // parsed from `hierarchy`
  AttentionKind attention = AttentionKind::LongShort;
  int window = 128;
  int chunk = 16;
  int rank = 1;
  Positions positions = Positions::Rope;
  Downsample downsample = Downsample::Linear;
  Upsample upsample = Upsample::Linear;
  Resampling resampling = Resampling::Plain;
  Activation activation = Activation::Relu2;
  bool dconv = true;
  std::vector<int> ffn_granularities = {1};
  float dropout = 0.0f;
  std::vector<int> head_granularities = {1};  // §9.6: nested head counts H/g
  // Head counts per stack block in forward order (extracted checkpoints); empty = all `heads`.
  std::vector<int> head_widths;

  int head_dim() const { return d_model / heads; }
  int middle() const { return static_cast<int>(stacks.size()) / 2; }
  int total_stack_blocks() const;
  // What stack block `global_block` (forward order) stores: its FFN width and its head count.
  int block_ffn(int global_block) const {
    return ffn_widths.empty() ? ffn : ffn_widths.at(global_block);
  }
  int block_heads(int global_block) const {
    return head_widths.empty() ? heads : head_widths.at(global_block);
  }
  // MatFormer sub-models (§1.5, §9.6): as many as the longer granularity list; sub-model i takes
  // FFN granularity f_i and head granularity g_i, a one-entry list applying to every sub-model.
  int submodels() const;
  int ffn_granularity(int submodel) const;
  int head_granularity(int submodel) const;
  // Sub-model i is the full model (both granularities 1).
  bool full_submodel(int submodel) const {
    return ffn_granularity(submodel) == 1 && head_granularity(submodel) == 1;
  }
  // Its name in logs: "g<f>", and "g<f>h<g>" when heads are nested.
  std::string submodel_name(int submodel) const;
};

// One sub-model's active widths, canonical, per stack block in forward order.
struct SubmodelWidths {
  std::vector<int> ffn;    // hidden units F_b / f_i
  std::vector<int> heads;  // heads H_b / g_i
};
// Every sub-model's widths, in sub-model order.
std::vector<SubmodelWidths> submodel_widths(const ModelConfig& m);
// The widths of the stored model: every block at its own full width.
SubmodelWidths full_widths(const ModelConfig& m);

// The nested widths training touches (trainer/config.h's trained_granularities): the band
// boundaries of the tensor-parallel split of stack FFNs and stack attentions
// (model/tensor_parallel.h).
struct NestedGranularities {
  std::vector<int> ffn = {1};
  std::vector<int> heads = {1};
};

}  // namespace hg
