// libFuzzer harness: the hierarchy string (model/model_config.h parse_hierarchy, ARCHITECTURE.md
// §1.1) and the model checks that use it (validate_model with a sequence length).
//
// Input: the first 4 bytes are train.seq_len (little-endian, any int), the rest the hierarchy.
// Contract: bad input throws UsageError and nothing else; an accepted hierarchy obeys every rule
// of §1.1 (odd count, K0 = 1, palindrome, strictly increasing integer ratios to the middle).
#include <cstdint>
#include <cstring>
#include <string>

#include "core/error.h"
#include "model/model_config.h"
#include "tests/fuzz/fuzz_support.h"
#include "trainer/config.h"

namespace {

void check_rules(const std::string& text, const std::vector<hg::StackSpec>& stacks) {
  const size_t count = stacks.size();
  bool ok = count % 2 == 1 && stacks[0].shortening == 1;
  for (size_t i = 0; ok && i < count; ++i) {
    ok = stacks[i].blocks >= 0 && stacks[i].shortening == stacks[count - 1 - i].shortening;
    if (ok && i < count / 2)
      ok = stacks[i + 1].shortening > stacks[i].shortening &&
           stacks[i + 1].shortening % stacks[i].shortening == 0;
  }
  if (!ok) hg::fuzz::fail("parse_hierarchy accepted '" + text + "', which breaks a rule of §1.1");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int32_t seq_len = 0;
  if (size >= 4) {
    std::memcpy(&seq_len, data, 4);
    data += 4;
    size -= 4;
  }
  const std::string text(reinterpret_cast<const char*>(data), size);
  hg::fuzz::expect_usage_errors([&] { check_rules(text, hg::parse_hierarchy(text)); });
  hg::ModelConfig model;
  model.hierarchy = text;
  hg::fuzz::expect_usage_errors([&] {
    hg::validate_model(model, seq_len);
    model.stacks = hg::parse_hierarchy(text);
    (void)model.total_stack_blocks();
  });
  return 0;
}
