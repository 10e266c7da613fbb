#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>

#include "core/error.h"
#include "parallel/partition.h"
#include "tests/parallel/hourglass_units.h"

namespace hg {
namespace {

std::vector<std::string> names(const std::vector<UnitInfo>& units, const std::vector<int>& first,
                               int stage) {
  std::vector<std::string> out;
  for (int u = first[stage]; u < first[stage + 1]; ++u) out.push_back(units[u].name);
  return out;
}

TEST(Partition, NaturalStagesOfAOneLevelHourglass) {
  const auto units = testing::hourglass_units({{2, 1}, {4, 3}, {2, 1}});
  const auto first = partition_units(units, 3, 3, "");
  ASSERT_EQ(first.size(), 4u);
  EXPECT_EQ(names(units, first, 0),
            (std::vector<std::string>{"embed", "stacks/0/blocks/0", "stacks/0/blocks/1",
                                      "stacks/0/norm", "down/0"}));
  EXPECT_EQ(names(units, first, 1).front(), "stacks/1/blocks/0");
  EXPECT_EQ(names(units, first, 1).back(), "stacks/1/norm");
  EXPECT_EQ(names(units, first, 2),
            (std::vector<std::string>{"up/0", "stacks/2/blocks/0", "stacks/2/blocks/1",
                                      "stacks/2/norm", "head"}));
  const auto edges = skip_edges(units, first);
  ASSERT_EQ(edges.size(), 1u);
  EXPECT_EQ(edges[0].level, 0);
  EXPECT_EQ(edges[0].producer_stage, 0);
  EXPECT_EQ(edges[0].consumer_stage, 2);
}

TEST(Partition, NaturalStagesOfATwoLevelHourglass) {
  const auto units = testing::hourglass_units({{1, 1}, {2, 2}, {4, 8}, {2, 2}, {1, 1}});
  const auto first = partition_units(units, 5, 5, "");
  EXPECT_EQ(names(units, first, 1).back(), "down/1");
  EXPECT_EQ(names(units, first, 3).front(), "up/1");
  EXPECT_EQ(names(units, first, 4).front(), "up/0");
  const auto edges = skip_edges(units, first);
  ASSERT_EQ(edges.size(), 2u);
  EXPECT_EQ(edges[0].producer_stage, 0);
  EXPECT_EQ(edges[0].consumer_stage, 4);
  EXPECT_EQ(edges[1].producer_stage, 1);
  EXPECT_EQ(edges[1].consumer_stage, 3);
}

TEST(Partition, BadStageHintsAreAModelBug) {
  auto units = testing::hourglass_units({{2, 1}, {4, 3}, {2, 1}});
  units[3].stage_hint = 2;  // skips stage 1
  EXPECT_THROW(partition_units(units, 3, 3, ""), std::logic_error);
  for (auto& u : units) u.stage_hint = -1;
  EXPECT_THROW(partition_units(units, 3, 3, ""), std::logic_error);
}

TEST(Partition, OverrideCountsAreUsedAndValidated) {
  const auto units = testing::hourglass_units({{2, 1}, {4, 3}, {2, 1}});  // 15 units
  ASSERT_EQ(units.size(), 15u);
  EXPECT_EQ(partition_units(units, 3, 3, "5,4,6"), (std::vector<int>{0, 5, 9, 15}));
  EXPECT_EQ(partition_units(units, 2, 3, "1,14"), (std::vector<int>{0, 1, 15}));
  for (const char* bad : {"5,4", "5,4,5", "5,4,7", "5,0,10", "5,x,6", "5,4,6,", "5,-1,11", "5;4;6",
                          ",5,10", "5,4.5,6"}) {
    try {
      partition_units(units, 3, 3, bad);
      ADD_FAILURE() << "accepted parallel.stages = " << bad;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("parallel.stages"), std::string::npos) << e.what();
    }
  }
}

TEST(Partition, MoreStagesThanUnitsIsAUsageError) {
  const auto units = testing::hourglass_units({{0, 1}});  // embed, stacks/0/norm, head
  EXPECT_EQ(partition_units(units, 3, 1, ""), (std::vector<int>{0, 1, 2, 3}));
  try {
    partition_units(units, 4, 1, "");
    ADD_FAILURE() << "accepted pp = 4 for 3 units";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("parallel.pp = 4 is larger than the model's 3 units"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(partition_units(units, 0, 1, ""), UsageError);
}

// Brute force over every contiguous partition: least max, then least sum of squares.
std::pair<double, double> brute_force(const std::vector<double>& flops, int stages) {
  const int n = static_cast<int>(flops.size());
  std::pair<double, double> best{1e300, 1e300};
  std::vector<int> cuts;
  std::function<void(int, int)> go = [&](int start, int left) {
    if (left == 1) {
      double mx = 0, sq = 0;
      int a = 0;
      std::vector<int> all = cuts;
      all.push_back(n);
      for (int b : all) {
        double c = 0;
        for (int u = a; u < b; ++u) c += flops[u];
        mx = std::max(mx, c);
        sq += c * c;
        a = b;
      }
      if (mx < best.first * (1 - 1e-12) || (mx <= best.first * (1 + 1e-12) && sq < best.second))
        best = {std::min(mx, best.first), sq};
      return;
    }
    for (int cut = start + 1; cut <= n - left + 1; ++cut) {
      cuts.push_back(cut);
      go(cut, left - 1);
      cuts.pop_back();
    }
  };
  go(0, stages);
  return best;
}

TEST(Partition, BalancedPartitionIsTheExactMinMax) {
  std::mt19937 random(7);
  for (int trial = 0; trial < 300; ++trial) {
    const int n = std::uniform_int_distribution<int>(1, 10)(random);
    const int stages = std::uniform_int_distribution<int>(1, std::min(n, 5))(random);
    std::vector<UnitInfo> units(n);
    std::vector<double> flops(n);
    for (int u = 0; u < n; ++u) {
      // Small integers make ties (and so the tie-break) common.
      flops[u] = std::uniform_int_distribution<int>(0, 6)(random);
      std::string name = "u";
      name += std::to_string(u);
      units[u] = {name, -1, flops[u], 0, 0, -1};
    }
    const auto first = partition_units(units, stages, 99, "");
    ASSERT_EQ(static_cast<int>(first.size()), stages + 1);
    ASSERT_EQ(first.front(), 0);
    ASSERT_EQ(first.back(), n);
    double mx = 0, sq = 0;
    for (int p = 0; p < stages; ++p) {
      ASSERT_LT(first[p], first[p + 1]) << "empty stage " << p;
      double c = 0;
      for (int u = first[p]; u < first[p + 1]; ++u) c += flops[u];
      mx = std::max(mx, c);
      sq += c * c;
    }
    const auto [best_max, best_squares] = brute_force(flops, stages);
    EXPECT_DOUBLE_EQ(mx, best_max) << "trial " << trial;
    EXPECT_DOUBLE_EQ(sq, best_squares) << "trial " << trial;
  }
}

TEST(Partition, BalancedTwoStageHourglassSplitsTheMiddleStack) {
  // "2@1 4@3 2@1" on pp = 2: the cost model puts the cut inside the shortened middle stack, so the
  // level-0 skip crosses from stage 0 to stage 1.
  const auto units = testing::hourglass_units({{2, 1}, {4, 3}, {2, 1}});
  const auto first = partition_units(units, 2, 3, "");
  const int cut = first[1];
  EXPECT_NE(units[cut].name.find("stacks/1/"), std::string::npos) << units[cut].name;
  const auto edges = skip_edges(units, first);
  ASSERT_EQ(edges.size(), 1u);
  EXPECT_EQ(edges[0].producer_stage, 0);
  EXPECT_EQ(edges[0].consumer_stage, 1);
  EXPECT_EQ(stage_of_unit(first, 0), 0);
  EXPECT_EQ(stage_of_unit(first, cut - 1), 0);
  EXPECT_EQ(stage_of_unit(first, cut), 1);
  EXPECT_EQ(stage_of_unit(first, static_cast<int>(units.size()) - 1), 1);
}

TEST(Partition, SkipEdgesNeedMatchingDownAndUp) {
  std::vector<UnitInfo> units = {
      {"embed", -1, 1, 0, 0, 0}, {"down/0", -1, 1, 0, 0, 0}, {"head", -1, 1, 0, 0, 0}};
  EXPECT_THROW(skip_edges(units, {0, 3}), std::logic_error);
  units[1].name = "up/0";
  EXPECT_THROW(skip_edges(units, {0, 3}), std::logic_error);
  units[1].name = "downsample";  // not a down/<i> unit
  EXPECT_TRUE(skip_edges(units, {0, 3}).empty());
}

TEST(Partition, FormatsATableWithOneRowPerStage) {
  const auto units = testing::hourglass_units({{2, 1}, {4, 3}, {2, 1}});
  const auto first = partition_units(units, 3, 3, "");
  const std::string table = format_partition(units, first);
  EXPECT_NE(table.find("stage"), std::string::npos) << table;
  EXPECT_NE(table.find("embed .. down/0"), std::string::npos) << table;
  EXPECT_NE(table.find("stacks/1/blocks/0 .. stacks/1/norm"), std::string::npos) << table;
  EXPECT_NE(table.find("up/0 .. head"), std::string::npos) << table;
  EXPECT_NE(table.find("total"), std::string::npos) << table;
  EXPECT_NE(table.find("skip level 0: stage 0 -> stage 2"), std::string::npos) << table;
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 1 + 3 + 1 + 1) << table;
}

// Interleaving: rank r holds virtual stages r, r + pp, ... as its chunks, in that order.
TEST(Partition, RankChunksTakeEveryPpthVirtualStage) {
  const std::vector<int> first = {0, 2, 5, 9, 12, 15, 17};  // 6 virtual stages
  using Ranges = std::vector<std::pair<int, int>>;
  EXPECT_EQ(rank_chunks(first, 2, 0), (Ranges{{0, 2}, {5, 9}, {12, 15}}));
  EXPECT_EQ(rank_chunks(first, 2, 1), (Ranges{{2, 5}, {9, 12}, {15, 17}}));
  EXPECT_EQ(rank_chunks(first, 3, 2), (Ranges{{5, 9}, {15, 17}}));
  EXPECT_EQ(rank_chunks(first, 6, 4), (Ranges{{12, 15}}));
  EXPECT_THROW(rank_chunks(first, 4, 0), std::logic_error);  // 6 is not a multiple of 4
  EXPECT_THROW(rank_chunks(first, 2, 2), std::logic_error);
}

}  // namespace
}  // namespace hg
