// libFuzzer harness: the run configuration's parser with its key table (trainer/config.h).
//
// Input: INI text, optionally followed by a NUL and command-line arguments, one per line. The
// INI text is read as a checkpoint's config would be (config_from_ini) and, from a temporary
// file, as `--config FILE` under the arguments (parse_config), so flags, files and their
// precedence are all fuzzed. Contract checked (ARCHITECTURE.md §8): bad input throws UsageError
// (exit 2) and nothing else; a configuration parse_config accepts is stored in every checkpoint
// as to_ini() text, so that text must read back (config_from_ini) as the same model.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "tests/fuzz/fuzz_support.h"
#include "trainer/config.h"

namespace {

// The model as a checkpoint rebuilds it: every [model] line of to_ini() but the hierarchy text
// (whose blanks may differ after a round trip), and the parsed stacks.
std::string model_fingerprint(const hg::Config& config) {
  std::string text;
  const std::string ini = config.to_ini();
  const size_t begin = ini.find("[model]"), end = ini.find("\n[", begin);
  for (size_t at = begin; at < end;) {
    const size_t line_end = std::min(ini.find('\n', at), end);
    const std::string line = ini.substr(at, line_end - at);
    if (!line.starts_with("hierarchy")) text += line + "\n";
    at = line_end + 1;
  }
  for (const hg::StackSpec& stack : config.model.stacks)
    text += std::to_string(stack.blocks) + "@" + std::to_string(stack.shortening) + " ";
  return text;
}

void check_round_trip(const hg::Config& config) {
  hg::Config back;
  try {
    back = hg::config_from_ini(config.to_ini());
  } catch (const hg::UsageError& e) {
    hg::fuzz::fail("an accepted configuration does not read back from its to_ini() text: " +
                   std::string(e.what()) + "\n" + config.to_ini());
  }
  if (model_fingerprint(back) != model_fingerprint(config))
    hg::fuzz::fail("the model changed in the to_ini() round trip:\n" + config.to_ini() +
                   "\nread back as\n" + back.to_ini());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string ini = input.substr(0, nul);
  hg::fuzz::expect_usage_errors([&] { check_round_trip(hg::config_from_ini(ini)); });

  static const hg::fuzz::TemporaryDirectory dir;
  const std::string file = dir.path() + "/run.ini";
  hg::fuzz::write_file(file, ini);
  std::vector<std::string> args = {"--config", file};
  if (nul != std::string::npos) {
    const std::string rest = input.substr(nul + 1);
    for (size_t at = 0; at <= rest.size();) {
      const size_t end = std::min(rest.find('\n', at), rest.size());
      args.push_back(rest.substr(at, end - at));
      at = end + 1;
    }
  }
  hg::fuzz::expect_usage_errors([&] { check_round_trip(hg::parse_config(args)); });
  return 0;
}
