// A synthetic hourglass unit list for the partition and schedule tests: the forward order and
// stage hints that the model builds (§6), with costs that scale like the real ones (a block at
// shortening K costs 1/K of a full-resolution block).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "parallel/partition.h"

namespace hg::testing {

// stacks: (blocks, shortening) per stack, e.g. {{2,1},{4,3},{2,1}} for "2@1 4@3 2@1".
inline std::vector<UnitInfo> hourglass_units(const std::vector<std::pair<int, int>>& stacks) {
  const int S = static_cast<int>(stacks.size()), m = S / 2;
  std::vector<UnitInfo> units;
  auto add = [&](std::string name, int stack, double flops, int hint) {
    units.push_back(
        {std::move(name), stack, flops, 4096.0 * flops, int64_t(1000 * flops) + 1, hint});
  };
  add("embed", -1, 0.1, 0);
  for (int i = 0; i < S; ++i) {
    const double K = stacks[i].second;
    const std::string stack = "stacks/" + std::to_string(i);
    if (i > m) add("up/" + std::to_string(S - 1 - i), -1, 0.5 / stacks[i - 1].second, i);
    for (int j = 0; j < stacks[i].first; ++j)
      add(stack + "/blocks/" + std::to_string(j), i, 12.0 / K, i);
    add(stack + "/norm", i, 0.01 / K, i);
    if (i < m) add("down/" + std::to_string(i), -1, 0.5 / stacks[i + 1].second, i);
  }
  add("head", -1, 2.0, S - 1);
  return units;
}

}  // namespace hg::testing
