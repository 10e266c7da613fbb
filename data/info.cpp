#include "data/info.h"

#include <cstdio>
#include <memory>
#include <vector>

#include "core/error.h"
#include "data/dataset.h"
#include "data/shard_format.h"

namespace hg {

int info_dataset_main(const std::string& dir) {
  std::vector<std::string> splits = dataset_splits(dir);
  if (splits.empty()) {
    throw UsageError("'" + dir + "' holds no token shards (" + shard_file_name("train", 0) +
                     ", ...): create a dataset with `hourglass prep --input FILE... --output " +
                     dir + "`");
  }
  std::vector<std::unique_ptr<TokenDataset>> datasets;
  for (const auto& split : splits) {
    datasets.push_back(std::make_unique<TokenDataset>(dir, split));
    const TokenDataset& first = *datasets.front();
    const TokenDataset& last = *datasets.back();
    if (last.vocab_size() != first.vocab_size() || last.sha256() != first.sha256()) {
      throw UsageError(
          last.shard_path(0) + " (vocab_size " + std::to_string(last.vocab_size()) + ") and " +
          first.shard_path(0) + " (vocab_size " + std::to_string(first.vocab_size()) +
          ") come from different prep runs: re-create the dataset with `hourglass prep`");
    }
  }
  const TokenDataset& first = *datasets.front();
  std::printf("dataset     %s\n", dir.c_str());
  std::printf("format      %s, version %lld\n", kTokenFormat,
              static_cast<long long>(kTokenFormatVersion));
  std::printf("vocabulary  %d (%s tokens)\n", first.vocab_size(),
              first.token_bytes() == 1 ? "uint8" : "uint16");
  for (size_t i = 0; i < first.sources().size(); ++i) {
    int64_t bytes = i < first.source_bytes().size() ? first.source_bytes()[i] : -1;
    std::printf("%s %s (%lld bytes)\n", i == 0 ? "sources    " : "           ",
                first.sources()[i].c_str(), static_cast<long long>(bytes));
  }
  std::printf("sha256      %s\n", first.sha256().c_str());
  std::printf("%-7s %8s %14s %8s\n", "split", "shards", "tokens", "share");
  int64_t total = 0;
  for (const auto& dataset : datasets) total += dataset->num_tokens();
  for (const char* split : kSplits) {
    const TokenDataset* found = nullptr;
    for (const auto& dataset : datasets) {
      if (dataset->split() == split) found = dataset.get();
    }
    int64_t tokens = found ? found->num_tokens() : 0;
    std::printf("%-7s %8d %14lld %7.2f%%\n", split, found ? found->num_shards() : 0,
                static_cast<long long>(tokens),
                total > 0 ? 100.0 * static_cast<double>(tokens) / static_cast<double>(total) : 0.0);
  }
  std::printf("%-7s %8s %14lld\n", "total", "", static_cast<long long>(total));
  std::fflush(stdout);
  return 0;
}

}  // namespace hg
