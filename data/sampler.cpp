#include "data/sampler.h"

#include <hdf5.h>

#include <stdexcept>
#include <string>

#include "core/error.h"
#include "core/random.h"
#include "data/dataset.h"

namespace hg {

int64_t sample_offset(uint64_t seed, int64_t step, int64_t global_sample, int64_t num_tokens,
                      int64_t window) {
  if (window < 1 || window > num_tokens) {
    throw std::invalid_argument("sample_offset: window " + std::to_string(window) +
                                " does not fit in " + std::to_string(num_tokens) + " tokens");
  }
  const uint64_t range = static_cast<uint64_t>(num_tokens - window) + 1;  // number of valid starts
  const uint64_t key = random_key(seed, RandomPurpose::Sample);
  const PhiloxBlock counter =
      counter_of(static_cast<uint64_t>(step), static_cast<uint64_t>(global_sample));
  // Lemire (2019): the high word of bits·range is uniform once products whose low word falls in
  // the first (2^64 mod range) values are rejected.
  const uint64_t threshold = (0 - range) % range;
  for (uint64_t attempt = 0;; ++attempt) {
    uint64_t bits = bits64_at(key + attempt * 0x9E3779B97F4A7C15ull, counter);
    unsigned __int128 product = static_cast<unsigned __int128>(bits) * range;
    if (static_cast<uint64_t>(product) >= threshold) return static_cast<int64_t>(product >> 64);
  }
}

BatchLoader::BatchLoader(const TokenDataset& data, uint64_t seed, int seq_len, int global_batch,
                         int dp, int dp_rank, int micro_batch, bool prefetch)
    : data_(data),
      seed_(seed),
      seq_len_(seq_len),
      global_batch_(global_batch),
      dp_(dp),
      dp_rank_(dp_rank),
      micro_batch_(micro_batch),
      prefetch_(prefetch) {
  require(seq_len >= 1, "train.seq_len must be at least 1, got " + std::to_string(seq_len));
  require(global_batch >= 1, "train.batch must be at least 1, got " + std::to_string(global_batch));
  require(dp >= 1 && dp_rank >= 0 && dp_rank < dp,
          "data-parallel rank " + std::to_string(dp_rank) +
              " outside parallel.dp = " + std::to_string(dp));
  require(micro_batch >= 1,
          "train.micro_batch must be at least 1, got " + std::to_string(micro_batch));
  require(global_batch % dp == 0,
          "train.batch = " + std::to_string(global_batch) +
              " sequences cannot be shared by parallel.dp = " + std::to_string(dp) +
              " replicas: make train.batch a multiple of parallel.dp");
  require((global_batch / dp) % micro_batch == 0,
          "each of the parallel.dp = " + std::to_string(dp) + " replicas gets " +
              std::to_string(global_batch / dp) +
              " sequences (train.batch / parallel.dp), not a multiple of train.micro_batch = " +
              std::to_string(micro_batch) + ": choose a micro_batch that divides it");
  require(data.num_tokens() >= static_cast<int64_t>(seq_len) + 1,
          "split '" + data.split() + "' of " + data.dir() + " holds " +
              std::to_string(data.num_tokens()) +
              " tokens, fewer than one window of train.seq_len + 1 = " +
              std::to_string(seq_len + 1) + ": use a larger dataset or a smaller train.seq_len");
  if (prefetch_) {
    hbool_t threadsafe = false;
    H5is_library_threadsafe(&threadsafe);
    // Other HDF5 users (checkpoints) run on the main thread: without the library's own lock a
    // reader thread would race them.
    prefetch_ = threadsafe;
  }
}

std::vector<MicroBatch> replica_micro_batches(int global_batch, int dp, int dp_rank,
                                              int micro_batch) {
  const int per_replica = global_batch / dp;
  std::vector<MicroBatch> batches(static_cast<size_t>(per_replica / micro_batch));
  for (size_t j = 0; j < batches.size(); ++j) {
    batches[j].first_sample = int64_t{dp_rank} * per_replica + int64_t(j) * micro_batch;
    batches[j].sequences = micro_batch;
  }
  return batches;
}

BatchLoader::~BatchLoader() {
  if (next_.valid()) next_.wait();
}

std::vector<MicroBatch> BatchLoader::read_step(int64_t step) const {
  const int64_t window = static_cast<int64_t>(seq_len_) + 1;
  std::vector<MicroBatch> batches = replica_micro_batches(global_batch_, dp_, dp_rank_, micro_batch_);
  for (auto& batch : batches) {
    batch.tokens.resize(static_cast<size_t>(micro_batch_ * window));
    int64_t sample = batch.first_sample;
    for (int i = 0; i < micro_batch_; ++i, ++sample) {
      int64_t offset = sample_offset(seed_, step, sample, data_.num_tokens(), window);
      data_.read(offset, window, batch.tokens.data() + i * window);
    }
  }
  return batches;
}

std::vector<MicroBatch> BatchLoader::load_step(int64_t step) {
  std::vector<MicroBatch> batches;
  if (next_.valid() && next_step_ == step) {
    batches = next_.get();  // rethrows what the reader thread threw
  } else {
    if (next_.valid()) {
      next_.wait();  // a step nobody asked for (a jump after resume): discard it
      next_ = {};
    }
    batches = read_step(step);
  }
  if (prefetch_) {
    next_step_ = step + 1;
    next_ = std::async(std::launch::async, [this, next = step + 1] { return read_step(next); });
  }
  return batches;
}

}  // namespace hg
