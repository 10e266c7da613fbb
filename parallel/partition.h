// Stage partitioning (ARCHITECTURE.md §6): the model is an ordered list of units in forward order
//   embed, stacks/0 blocks, stacks/0 norm, down/0, stacks/1 ..., down/(m-1), stacks/m (middle),
//   up/(m-1), stacks/(m+1) ..., up/0, stacks/(S-1), head
// and a stage is a contiguous range of it. Stage p holds units first[p] .. first[p+1]-1.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "parallel/schedule.h"

namespace hg {

struct UnitInfo {
  std::string name;  // canonical prefix: "embed", "stacks/1/blocks/0", "stacks/1/norm", "down/0",
                     // "up/0", "head". "down/<i>" and "up/<i>" locate the skip edges.
  int stack = -1;    // stack index, or -1 for embed / head / down / up
  double flops = 0;  // cost of one micro-batch, forward + backward, at the unit's own resolution
                     // (only ratios matter: the balancing compares stages)
  double activation_bytes = 0;  // kept from forward to backward, per micro-batch
  int64_t params = 0;           // parameter count
  // The unit's stage when pp equals the number of stacks S (the model fills it): stage i holds
  // stack i, then down/i on the rising side (i < m); up/(S-1-i), then stack i on the falling
  // side (i > m: up/j runs just before stack S-1-j, §1.1); stage 0 also embed, stage S-1 also
  // head. -1 if unknown.
  int stage_hint = -1;
};

// Returns first[0..stages]: first[p] = index of stage p's first unit, first[stages] = units.size().
//  1. override_counts (parallel.stages, e.g. "5,4,6": units per stage), if not empty. UsageError
//     unless it is `stages` positive integers summing to units.size().
//  2. else, if stages == num_stacks: group by stage_hint (std::logic_error if the hints are not
//     0..stages-1, non-decreasing, each used).
//  3. else the contiguous partition that minimises the largest stage's flops (exact dynamic
//     programme); among those, the one with the least sum of squared stage flops.
// UsageError if stages < 1 or stages > units.size().
std::vector<int> partition_units(const std::vector<UnitInfo>& units, int stages, int num_stacks,
                                 const std::string& override_counts);

// Interleaved pipeline: `first` partitions the units into ranks·v virtual stages; rank r holds
// virtual stages r, r + ranks, r + 2·ranks, ... as its chunks 0, 1, ...: their unit ranges
// [first[k], first[k + 1]). One range when first has ranks + 1 entries.
std::vector<std::pair<int, int>> rank_chunks(const std::vector<int>& first, int ranks, int rank);

// Stage of unit `unit` under `first`.
int stage_of_unit(const std::vector<int>& first, int unit);

// The skip edges of a partition: level i goes from the stage of "down/<i>" to the stage of
// "up/<i>". std::logic_error if a down/<i> has no up/<i> or the reverse.
std::vector<SkipEdge> skip_edges(const std::vector<UnitInfo>& units, const std::vector<int>& first);

// A table for rank 0 to print: per stage its units (first .. last name, count), estimated FLOP
// per micro-batch, parameters and activation bytes per micro-batch (SI prefixes); then a total
// row and the skip edges that cross stages.
std::string format_partition(const std::vector<UnitInfo>& units, const std::vector<int>& first);

}  // namespace hg
