// `hourglass info DIR` for a token-shard directory: splits, shard counts, tokens per split,
// vocabulary, sources. (`hourglass info CHECKPOINT` belongs to the checkpoint code.)
#pragma once
#include <string>

namespace hg {

// Prints the dataset summary on stdout after validating every shard (TokenDataset's checks, plus
// agreement of vocabulary and input digest across splits). Returns 0; throws UsageError naming the
// file for a missing directory, one without shards, or bad shards.
int info_dataset_main(const std::string& dir);

}  // namespace hg
