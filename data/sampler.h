// The training sampler of ARCHITECTURE.md §3: stateless, keyed by (seed, step, global sample), so
// the global batch of a step is the same for every (dp, pp, tp) layout and a resumed run needs no
// loader state.
#pragma once
#include <cstdint>
#include <future>
#include <vector>

namespace hg {

class TokenDataset;

// Start of sample `global_sample` of step `step`: uniform over [0, num_tokens - window], from
// Philox keyed by random_key(seed, RandomPurpose::Sample) at counter (step, global_sample).
// Reduction: Lemire's multiply-shift with rejection (exactly uniform); a rejected draw (probability
// below range / 2^64) redraws under the key + attempt · 0x9E3779B97F4A7C15 at the same counter.
// Requires 1 <= window <= num_tokens (std::invalid_argument otherwise).
int64_t sample_offset(uint64_t seed, int64_t step, int64_t global_sample, int64_t num_tokens,
                      int64_t window);

struct MicroBatch {
  std::vector<int32_t>
      tokens;  // [sequences, seq_len + 1], row-major: inputs [.., :L], targets [.., 1:]
  int64_t first_sample = 0;  // global index (within the step) of its first sequence
  int64_t sequences = 0;     // = micro_batch
};

// Replica `dp_rank`'s micro-batches of a step of `global_batch` sequences: sizes and global sample
// indices, tokens empty (the one rule for both the loader and the stages that load nothing).
std::vector<MicroBatch> replica_micro_batches(int global_batch, int dp, int dp_rank,
                                              int micro_batch);

// One data-parallel replica's share of each step: replica r takes the contiguous slice
// [r·B/dp, (r+1)·B/dp) of the global batch and cuts it, in order, into micro-batches of
// `micro_batch` sequences. Only ranks that need tokens (first and last pipeline stage) build one.
// A background thread reads step s+1 while step s is being trained (`prefetch`); it is skipped
// automatically when the HDF5 library is not thread-safe.
class BatchLoader {
 public:
  // Throws UsageError when dp does not divide global_batch, micro_batch does not divide
  // global_batch / dp, or the split holds fewer than seq_len + 1 tokens.
  BatchLoader(const TokenDataset& data, uint64_t seed, int seq_len, int global_batch, int dp,
              int dp_rank, int micro_batch, bool prefetch = true);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // This replica's micro-batches of `step`, in order.
  std::vector<MicroBatch> load_step(int64_t step);

 private:
  std::vector<MicroBatch> read_step(int64_t step) const;

  const TokenDataset& data_;
  uint64_t seed_;
  int seq_len_;
  int global_batch_;
  int dp_;
  int dp_rank_;
  int micro_batch_;
  bool prefetch_;
  std::future<std::vector<MicroBatch>> next_;  // the prefetched step next_step_
  int64_t next_step_ = -1;
};

}  // namespace hg
