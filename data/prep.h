// `hourglass prep` (ARCHITECTURE.md §4, §8): raw files -> a directory of HDF5 token shards.
//
//   hourglass prep --input FILE... --output DIR [--format bytes|u16] [--vocab-size V]
//                  [--valid-bytes N] [--test-bytes N] [--shard-bytes N] [--force] [--quiet]
//
// The inputs are read in the order given as one stream and split train | valid | test, validation
// and test being the contiguous ranges at the end (default 5% each). Shards are written into a
// hidden temporary directory next to DIR and renamed to DIR when complete, so DIR either does not
// exist or holds a whole dataset.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hg {

struct PrepOptions {
  std::vector<std::string> inputs;
  std::string output;
  std::string format = "bytes";  // bytes: one token per byte; u16: little-endian uint16 ids
  int64_t vocab_size = 0;        // 0: 256 for bytes, largest id + 1 for u16
  int64_t valid_bytes = -1;      // input bytes for validation; -1: 5% of the tokens
  int64_t test_bytes = -1;       // input bytes for test; -1: 5% of the tokens
  int64_t shard_bytes = int64_t{64}
                        << 20;  // stored bytes per shard (the last shard of a split is shorter)
  bool force = false;           // replace an existing dataset directory
  bool progress = true;         // progress line on stderr (--quiet turns it off)
  bool help = false;
};

// Parses the arguments that follow the word `prep` (a leading "prep" is skipped). Throws
// UsageError for unknown flags, missing values or malformed numbers.
PrepOptions parse_prep_args(const std::vector<std::string>& args);

std::string prep_usage();

// Writes the dataset. Throws UsageError (exit code 2) naming the file and the fix for: no input,
// a missing, unreadable or empty input, a u16 input of odd size, a token id >= vocab_size, splits
// that leave no training tokens, an existing output without `force`; no output or temporary
// directory remains after a failure.
void prep_dataset(const PrepOptions& options);

// The subcommand: parse, then prep_dataset (or print usage for --help). Returns 0; bad input
// throws UsageError for the caller to report with exit code 2.
int prep_main(const std::vector<std::string>& args);

}  // namespace hg
