// Which elements of a tensor a data-parallel replica owns under ZeRO-1 (parallel.zero 1,
// ARCHITECTURE.md §9.3): replica r of `count` owns the contiguous run [r·n/count, (r+1)·n/count)
// of the n elements this rank holds (the tensor-parallel slice, flattened). Floors, so the runs
// tile [0, n) with sizes differing by at most one.
#pragma once
#include <cstdint>

namespace hg {

struct ShardRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

inline ShardRange shard_range(int64_t n, int rank, int count) {
  return {n * rank / count, n * (rank + 1) / count};
}

}  // namespace hg
