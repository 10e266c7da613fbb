// What the libFuzzer harnesses of tests/fuzz found (scripts/fuzz.sh), each kept as a regression
// test with the input that found it: bad input must end in a UsageError (exit 2) that says what
// is wrong, never in undefined behaviour, a crash or another exception.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "model/model_config.h"
#include "trainer/config.h"

namespace hg {
namespace {

// fuzz_hierarchy: block counts whose total overflowed int (signed overflow in validate_model and
// ModelConfig::total_stack_blocks, UBSan).
TEST(FuzzFindings, HierarchyBlockTotalBeyondIntIsAUsageError) {
  const std::string text = "2147483647@1 1@2 2147483647@1";
  try {
    parse_hierarchy(text);
    ADD_FAILURE() << "accepted " << text;
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("4294967295 blocks in all; at most 1048576"),
              std::string::npos)
        << e.what();
  }
  ModelConfig model;
  model.hierarchy = text;
  EXPECT_THROW(validate_model(model, 2147483646), UsageError);
  EXPECT_THROW(parse_config({"--model.hierarchy", text}), UsageError);
  EXPECT_NO_THROW(parse_hierarchy("1048574@1 1@2 1@1"));  // the limit itself is accepted
}

// fuzz_config: a checkpoint path with a name longer than NAME_MAX made std::filesystem throw
// filesystem_error ("File name too long") out of the configuration's validation. Every path a
// user gives is now asked about without throwing: such a path is no file, a UsageError.
TEST(FuzzFindings, OverlongPathIsAUsageError) {
  const std::string name(300, 'c');  // one component past NAME_MAX (255)
  for (const char* key : {"--checkpoint.resume", "--checkpoint.init_from", "--config"}) {
    try {
      parse_config({key, name});
      ADD_FAILURE() << "accepted " << key << " " << name.size() << " chars";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace hg
