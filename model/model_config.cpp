#include "model/model_config.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <sstream>

#include "core/error.h"

namespace hg {
namespace {

// The whole of `text` is one decimal int.
bool parse_int(const std::string& text, int& out) {
  const char* end = text.data() + text.size();
  auto [stop, status] = std::from_chars(text.data(), end, out);
  return !text.empty() && status == std::errc() && stop == end;
}

// "n@K" -> {n, K}; false when the token has another shape.
bool parse_stack(const std::string& token, StackSpec& stack) {
  const size_t at = token.find('@');
  return at != std::string::npos && parse_int(token.substr(0, at), stack.blocks) &&
         parse_int(token.substr(at + 1), stack.shortening);
}

// Far beyond any model (1M blocks), and low enough that every block and unit count derived from
// the hierarchy fits an int (found by tests/fuzz/fuzz_hierarchy: "2147483647@1 1@2 2147483647@1"
// overflowed the block total).
constexpr int64_t kMaxTotalBlocks = int64_t{1} << 20;

}  // namespace

std::vector<StackSpec> parse_hierarchy(const std::string& text) {
  auto check = [&](bool ok, const std::string& rule) {
    if (!ok) throw UsageError("model.hierarchy = '" + text + "': " + rule);
  };
  std::vector<StackSpec> stacks;
  std::istringstream in(text);
  for (std::string token; in >> token;) {
    check(parse_stack(token, stacks.emplace_back()),
          "'" + token + "' is not n@K (blocks@shortening, e.g. \"2@1 4@3 2@1\")");
    check(stacks.back().blocks >= 0, "'" + token + "' has a negative block count");
    check(stacks.back().shortening >= 1, "'" + token + "' has shortening below 1");
  }
  int64_t total_blocks = 0;
  for (const StackSpec& stack : stacks) total_blocks += stack.blocks;
  check(total_blocks <= kMaxTotalBlocks, std::to_string(total_blocks) + " blocks in all; at most " +
                                             std::to_string(kMaxTotalBlocks) + " are supported");
  const int count = static_cast<int>(stacks.size());
  check(count % 2 == 1,
        "needs an odd number of stacks (rising, middle, mirrored falling), e.g. \"2@1 4@3 2@1\"");
  check(stacks[0].shortening == 1, "the first stack must run at shortening 1 (n@1)");
  for (int i = 0; i < count; ++i) {
    const int k = stacks[i].shortening, mirror = stacks[count - 1 - i].shortening;
    check(k == mirror, "shortenings must be a palindrome: stack " + std::to_string(i) + " has " +
                           std::to_string(k) + ", its mirror " + std::to_string(count - 1 - i) +
                           " has " + std::to_string(mirror));
    if (i >= count / 2) continue;
    const int next = stacks[i + 1].shortening;
    check(next > k, "shortenings must strictly increase up to the middle stack (" +
                        std::to_string(k) + " then " + std::to_string(next) + ")");
    check(next % k == 0, "each shortening must be an integer multiple of the previous (" +
                             std::to_string(next) + " / " + std::to_string(k) +
                             " is not an integer)");
  }
  return stacks;
}

int ModelConfig::total_stack_blocks() const {
  int total = 0;
  for (const StackSpec& stack : stacks.empty() ? parse_hierarchy(hierarchy) : stacks)
    total += stack.blocks;
  return total;
}

int ModelConfig::submodels() const {
  return static_cast<int>(std::max(ffn_granularities.size(), head_granularities.size()));
}

int ModelConfig::ffn_granularity(int submodel) const {
  return ffn_granularities.size() == 1 ? ffn_granularities[0] : ffn_granularities.at(submodel);
}

int ModelConfig::head_granularity(int submodel) const {
  return head_granularities.size() == 1 ? head_granularities[0] : head_granularities.at(submodel);
}

std::string ModelConfig::submodel_name(int submodel) const {
  std::string name = "g" + std::to_string(ffn_granularity(submodel));
  if (head_granularities.size() > 1 || head_granularities[0] != 1)
    name += "h" + std::to_string(head_granularity(submodel));
  return name;
}

std::vector<SubmodelWidths> submodel_widths(const ModelConfig& m) {
  std::vector<SubmodelWidths> all(m.submodels());
  const int blocks = m.total_stack_blocks();
  for (int i = 0; i < m.submodels(); ++i) {
    for (int b = 0; b < blocks; ++b) {
      all[i].ffn.push_back(m.block_ffn(b) / m.ffn_granularity(i));
      all[i].heads.push_back(m.block_heads(b) / m.head_granularity(i));
    }
  }
  return all;
}

SubmodelWidths full_widths(const ModelConfig& m) {
  SubmodelWidths w;
  for (int b = 0; b < m.total_stack_blocks(); ++b) {
    w.ffn.push_back(m.block_ffn(b));
    w.heads.push_back(m.block_heads(b));
  }
  return w;
}

}  // namespace hg
