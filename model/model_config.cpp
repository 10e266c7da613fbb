#include "model/model_config.h"

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

}  // namespace hg
