// Read-only access to one split of a token-shard directory (ARCHITECTURE.md §4).
//
// The split's shards `<split>-00000.h5 …` are one stream of num_tokens() tokens; read() maps a
// global offset to (shard, offset) and reads across shard boundaries with hyperslab selections.
// Files are opened with HDF5 file locking off, so any number of ranks (and a writer preparing
// another dataset, or a checkpoint being written) can have them open at once.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace hg {

class TokenDataset {
 public:
  // Opens and validates every shard of `split` (train, valid or test) in `dir`. Throws UsageError
  // naming the file and the fix: missing directory, no shards of the split, a missing shard, a
  // file that is not HDF5 or not an hourglass shard, a truncated shard, shards of different
  // vocabularies, format versions or prep runs.
  TokenDataset(const std::string& dir, const std::string& split);
  ~TokenDataset();
  TokenDataset(TokenDataset&&) noexcept;
  TokenDataset& operator=(TokenDataset&&) noexcept;
  TokenDataset(const TokenDataset&) = delete;
  TokenDataset& operator=(const TokenDataset&) = delete;

  int64_t num_tokens() const { return num_tokens_; }
  int vocab_size() const { return vocab_size_; }
  int num_shards() const { return static_cast<int>(shard_starts_.size()) - 1; }
  int token_bytes() const { return token_bytes_; }  // 1 (uint8 shards) or 2 (uint16)
  const std::string& dir() const { return dir_; }
  const std::string& split() const { return split_; }
  const std::vector<std::string>& sources() const { return sources_; }  // input file names
  const std::vector<int64_t>& source_bytes() const { return source_bytes_; }
  const std::string& sha256() const { return sha256_; }  // of the whole prep input stream
  std::string shard_path(int shard) const;
  int64_t shard_tokens(int shard) const { return shard_starts_[shard + 1] - shard_starts_[shard]; }

  struct Location {
    int shard;
    int64_t offset;  // within the shard
  };
  // Where global token `offset` (0 <= offset < num_tokens()) lives.
  Location locate(int64_t offset) const;

  // Tokens [offset, offset + count) of the split into out[0 .. count). Safe to call from several
  // threads (HDF5 serialises them). Throws std::out_of_range for a range outside the split and
  // UsageError naming the shard when a token id is >= vocab_size().
  void read(int64_t offset, int64_t count, int32_t* out) const;

 private:
  struct Shard;
  std::string dir_;
  std::string split_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<int64_t>
      shard_starts_;  // [num_shards + 1]: global offset of each shard's first token
  int64_t num_tokens_ = 0;
  int vocab_size_ = 0;
  int token_bytes_ = 1;
  std::vector<std::string> sources_;
  std::vector<int64_t> source_bytes_;
  std::string sha256_;
};

// UsageError unless a model that embeds token ids 0 .. model_vocab - 1 covers every id `data` may
// hold (its vocab_size()): a larger id would read past the embedding table. The message names
// `data_name` (e.g. "--data DIR"), both vocabularies, `model_name` (e.g. "model.vocab_size of
// checkpoint 'X'") and `fix`.
void require_vocabulary_fits(const TokenDataset& data, const std::string& data_name,
                             int model_vocab, const std::string& model_name,
                             const std::string& fix);

// The splits (in train, valid, test order) that have at least one shard file in `dir`;
// throws UsageError when `dir` is not a directory.
std::vector<std::string> dataset_splits(const std::string& dir);

}  // namespace hg
