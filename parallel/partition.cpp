#include "parallel/partition.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>

#include "core/error.h"

namespace hg {
namespace {

std::vector<int> from_counts(const std::vector<UnitInfo>& units, int stages,
                             const std::string& text) {
  const std::string fix =
      ": give " + std::to_string(stages) +
      " positive unit counts (one per pipeline stage) that sum to the model's " +
      std::to_string(units.size()) + " units, e.g. parallel.stages = " + "\"5,4,6\"";
  std::vector<int> counts;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    int count = 0;
    try {
      count = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    require(used > 0 && used == item.size() && count > 0,
            "parallel.stages = \"" + text + "\": '" + item + "' is not a positive integer" + fix);
    counts.push_back(count);
  }
  if (!text.empty() && text.back() == ',')
    throw UsageError("parallel.stages = \"" + text + "\" ends with a comma" + fix);
  require(static_cast<int>(counts.size()) == stages,
          "parallel.stages = \"" + text + "\" lists " + std::to_string(counts.size()) +
              " stages but parallel.pp = " + std::to_string(stages) + fix);
  std::vector<int> first{0};
  for (int count : counts) first.push_back(first.back() + count);
  require(first.back() == static_cast<int>(units.size()),
          "parallel.stages = \"" + text + "\" covers " + std::to_string(first.back()) +
              " units but the model has " + std::to_string(units.size()) + fix);
  return first;
}

std::vector<int> from_hints(const std::vector<UnitInfo>& units, int stages) {
  std::vector<int> first{0};
  int stage = 0;
  for (size_t u = 0; u < units.size(); ++u) {
    const int hint = units[u].stage_hint;
    if (hint == stage) continue;
    if (hint != stage + 1 || u == 0)
      throw std::logic_error("partition: unit " + std::to_string(u) + " '" + units[u].name +
                             "' has stage_hint " + std::to_string(hint) + " after stage " +
                             std::to_string(stage) +
                             "; hints must run 0, 1, ..., pp-1 in forward order");
    first.push_back(static_cast<int>(u));
    stage = hint;
  }
  if (units.empty() || units[0].stage_hint != 0 || stage != stages - 1)
    throw std::logic_error("partition: stage hints reach stage " + std::to_string(stage) +
                           " but pp = " + std::to_string(stages) +
                           " stages (the first unit must have hint 0)");
  first.push_back(static_cast<int>(units.size()));
  return first;
}

// Contiguous min-max partition: dp over (stages used, units covered). First the optimal
// bottleneck, then among partitions within it the least sum of squares (another exact dp: the
// cap is per stage and the sum is additive, so it decomposes where a lexicographic dp would not).
std::vector<int> balanced(const std::vector<UnitInfo>& units, int stages) {
  const int n = static_cast<int>(units.size());
  std::vector<double> prefix(n + 1, 0.0);
  for (int u = 0; u < n; ++u) prefix[u + 1] = prefix[u] + units[u].flops;
  auto cost = [&](int a, int b) { return prefix[b] - prefix[a]; };  // units a .. b-1
  const double inf = std::numeric_limits<double>::infinity();

  // best[k][i]: least bottleneck of the first i units on k stages.
  std::vector<std::vector<double>> best(stages + 1, std::vector<double>(n + 1, inf));
  best[0][0] = 0;
  for (int k = 1; k <= stages; ++k)
    for (int i = k; i <= n; ++i)
      for (int j = k - 1; j < i; ++j)
        best[k][i] = std::min(best[k][i], std::max(best[k - 1][j], cost(j, i)));
  const double cap = best[stages][n] * (1 + 1e-12) + 1e-300;

  std::vector<std::vector<double>> squares(stages + 1, std::vector<double>(n + 1, inf));
  std::vector<std::vector<int>> cut(stages + 1, std::vector<int>(n + 1, -1));
  squares[0][0] = 0;
  for (int k = 1; k <= stages; ++k)
    for (int i = k; i <= n; ++i)
      for (int j = k - 1; j < i; ++j) {
        const double c = cost(j, i);
        if (c > cap || squares[k - 1][j] == inf) continue;
        const double total = squares[k - 1][j] + c * c;
        if (total < squares[k][i]) {
          squares[k][i] = total;
          cut[k][i] = j;
        }
      }
  std::vector<int> first(stages + 1);
  first[stages] = n;
  for (int k = stages; k >= 1; --k) first[k - 1] = cut[k][first[k]];
  return first;
}

std::string human(double value, const char* unit) {
  const char* prefixes[] = {"", "k", "M", "G", "T", "P"};
  int p = 0;
  while (std::abs(value) >= 1000 && p < 5) {
    value /= 1000;
    ++p;
  }
  char text[32];
  std::snprintf(text, sizeof text, p ? "%.2f %s%s" : "%.0f %s%s", value, prefixes[p], unit);
  return text;
}

int level_of(const std::string& name, const char* prefix) {
  const std::string p = prefix;
  if (name.compare(0, p.size(), p) != 0 || name.size() == p.size()) return -1;
  for (size_t i = p.size(); i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return -1;
  return std::stoi(name.substr(p.size()));
}

}  // namespace

std::vector<int> partition_units(const std::vector<UnitInfo>& units, int stages, int num_stacks,
                                 const std::string& override_counts) {
  const int n = static_cast<int>(units.size());
  require(stages >= 1, "parallel.pp = " + std::to_string(stages) + " must be >= 1");
  require(stages <= n, "parallel.pp = " + std::to_string(stages) + " is larger than the model's " +
                           std::to_string(n) +
                           " units (embed, blocks, stack norms, down/up, head): every pipeline "
                           "stage needs at least one unit; use parallel.pp <= " +
                           std::to_string(n));
  if (!override_counts.empty()) return from_counts(units, stages, override_counts);
  if (stages == num_stacks) return from_hints(units, stages);
  return balanced(units, stages);
}

std::vector<std::pair<int, int>> rank_chunks(const std::vector<int>& first, int ranks, int rank) {
  const int virtual_count = static_cast<int>(first.size()) - 1;
  if (ranks < 1 || rank < 0 || rank >= ranks || virtual_count < ranks || virtual_count % ranks)
    throw std::logic_error("rank_chunks: " + std::to_string(virtual_count) +
                           " virtual stages, rank " + std::to_string(rank) + " of " +
                           std::to_string(ranks));
  std::vector<std::pair<int, int>> chunks;
  for (int k = rank; k < virtual_count; k += ranks) chunks.push_back({first[k], first[k + 1]});
  return chunks;
}

int stage_of_unit(const std::vector<int>& first, int unit) {
  auto it = std::upper_bound(first.begin(), first.end(), unit);
  return static_cast<int>(it - first.begin()) - 1;
}

std::vector<SkipEdge> skip_edges(const std::vector<UnitInfo>& units,
                                 const std::vector<int>& first) {
  std::map<int, int> down, up;  // level -> stage
  for (int u = 0; u < static_cast<int>(units.size()); ++u) {
    if (int level = level_of(units[u].name, "down/"); level >= 0)
      down[level] = stage_of_unit(first, u);
    if (int level = level_of(units[u].name, "up/"); level >= 0) up[level] = stage_of_unit(first, u);
  }
  std::vector<SkipEdge> edges;
  for (const auto& [level, producer] : down) {
    auto it = up.find(level);
    if (it == up.end())
      throw std::logic_error("partition: down/" + std::to_string(level) + " has no up/" +
                             std::to_string(level));
    edges.push_back({level, producer, it->second});
  }
  if (up.size() != down.size()) throw std::logic_error("partition: an up/<i> has no down/<i>");
  return edges;
}

std::string format_partition(const std::vector<UnitInfo>& units, const std::vector<int>& first) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-5s %-46s %6s %14s %12s %14s\n", "stage", "units", "count",
                "FLOP/mb", "params", "activ./mb");
  out += line;
  double total_flops = 0, total_bytes = 0;
  int64_t total_params = 0;
  const int stages = static_cast<int>(first.size()) - 1;
  for (int p = 0; p < stages; ++p) {
    double flops = 0, bytes = 0;
    int64_t params = 0;
    for (int u = first[p]; u < first[p + 1]; ++u) {
      flops += units[u].flops;
      bytes += units[u].activation_bytes;
      params += units[u].params;
    }
    total_flops += flops;
    total_bytes += bytes;
    total_params += params;
    const std::string range = first[p + 1] > first[p]
                                  ? units[first[p]].name + " .. " + units[first[p + 1] - 1].name
                                  : "(none)";
    std::snprintf(line, sizeof line, "%-5d %-46s %6d %14s %12s %14s\n", p, range.c_str(),
                  first[p + 1] - first[p], human(flops, "FLOP").c_str(),
                  human(static_cast<double>(params), "").c_str(), human(bytes, "B").c_str());
    out += line;
  }
  std::snprintf(line, sizeof line, "%-5s %-46s %6zu %14s %12s %14s\n", "total", "", units.size(),
                human(total_flops, "FLOP").c_str(),
                human(static_cast<double>(total_params), "").c_str(),
                human(total_bytes, "B").c_str());
  out += line;
  for (const SkipEdge& e : skip_edges(units, first))
    if (e.producer_stage != e.consumer_stage)
      out += "skip level " + std::to_string(e.level) + ": stage " +
             std::to_string(e.producer_stage) + " -> stage " + std::to_string(e.consumer_stage) +
             " (and its gradient back)\n";
  return out;
}

}  // namespace hg
