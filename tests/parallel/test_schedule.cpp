// Pipeline schedules as data: every schedule of both kinds, pp 1..8, m 1..32, with and without
// hourglass skip edges, is executed by the simulator and must finish without deadlock, with every
// message received exactly once, the activation counts each schedule promises and (uniform stages)
// the closed-form bubble.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "core/error.h"
#include "parallel/partition.h"
#include "parallel/schedule.h"
#include "tests/parallel/hourglass_units.h"

namespace hg {
namespace {

const ScheduleKind kKinds[] = {ScheduleKind::GPipe, ScheduleKind::OneFOneB};

// Skip-edge sets worth proving for `pp` stages.
std::vector<std::pair<std::string, std::vector<SkipEdge>>> skip_layouts(int pp) {
  std::vector<std::pair<std::string, std::vector<SkipEdge>>> layouts;
  layouts.push_back({"no skips", {}});
  // One level: first stage -> last stage ("2@1 4@3 2@1" with pp = 3: stage 0 -> stage 2).
  layouts.push_back({"one level, first -> last", {{0, 0, pp - 1}}});
  // Two levels, nested (pp = 5: 0 -> 4 and 1 -> 3).
  layouts.push_back(
      {"two levels, nested",
       {{0, 0, pp - 1}, {1, std::min(1, pp - 1), std::max(pp - 2, std::min(1, pp - 1))}}});
  // Producer == consumer: no traffic for that level.
  layouts.push_back({"same-stage skips", {{0, 0, 0}, {1, pp - 1, pp - 1}}});
  // The edges of real hourglasses, balanced by the cost model onto pp stages.
  const std::vector<std::vector<std::pair<int, int>>> models = {
      {{2, 1}, {4, 3}, {2, 1}},
      {{1, 1}, {2, 2}, {4, 8}, {2, 2}, {1, 1}},
      {{5, 1}, {24, 3}, {5, 1}}};
  for (const auto& model : models) {
    auto units = testing::hourglass_units(model);
    if (pp > static_cast<int>(units.size())) continue;
    auto first = partition_units(units, pp, static_cast<int>(model.size()), "");
    layouts.push_back(
        {"hourglass of " + std::to_string(model.size()) + " stacks", skip_edges(units, first)});
  }
  // Random edges, nested or not.
  std::mt19937 random(pp);
  for (int trial = 0; trial < 3; ++trial) {
    std::vector<SkipEdge> edges;
    for (int level = 0; level < 3; ++level) {
      int a = std::uniform_int_distribution<int>(0, pp - 1)(random);
      int b = std::uniform_int_distribution<int>(0, pp - 1)(random);
      edges.push_back({level, std::min(a, b), std::max(a, b)});
    }
    layouts.push_back({"random edges " + std::to_string(trial), edges});
  }
  return layouts;
}

TEST(Schedule, EveryScheduleRunsWithoutDeadlockAndKeepsItsPromises) {
  int cases = 0;
  for (ScheduleKind kind : kKinds)
    for (int pp = 1; pp <= 8; ++pp)
      for (int m = 1; m <= 32; ++m)
        for (const auto& [label, skips] : skip_layouts(pp)) {
          const PipelineLayout layout{pp, m, skips};
          const auto lists = make_schedule(kind, layout);
          const SimulationResult result = simulate(lists);
          const std::string where = std::string(schedule_name(kind)) + " pp=" + std::to_string(pp) +
                                    " m=" + std::to_string(m) + " " + label;
          ASSERT_TRUE(result.ok) << where << ": " << result.error;
          ASSERT_FALSE(result.deadlock) << where;
          ASSERT_EQ(static_cast<int>(lists.size()), pp) << where;
          for (int s = 0; s < pp; ++s) {
            int forwards = 0, backwards = 0;
            for (const Instruction& in : lists[s]) {
              forwards += in.op == Op::Forward;
              backwards += in.op == Op::Backward;
            }
            EXPECT_EQ(forwards, m) << where << " stage " << s;
            EXPECT_EQ(backwards, m) << where << " stage " << s;
            // GPipe keeps every micro-batch alive; 1F1B at most pp - s (so <= pp) on stage s.
            const int alive = kind == ScheduleKind::GPipe ? m : std::min(pp - s, m);
            EXPECT_EQ(result.max_alive[s], alive) << where << " stage " << s;
            EXPECT_LE(result.max_alive[s], kind == ScheduleKind::GPipe ? m : pp);
          }
          // Skip messages never lie on the critical path (the skip leaves its producer before the
          // activation chain reaches the consumer, and its gradient likewise), so the closed form
          // holds for every skip layout, not only for none.
          EXPECT_NEAR(result.bubble, theoretical_bubble(pp, m), 1e-12) << where;
          EXPECT_NEAR(result.makespan, 3.0 * (m + pp - 1), 1e-9) << where;
          ++cases;
        }
  EXPECT_GT(cases, 2 * 8 * 32 * 7);
}

TEST(Schedule, BubbleWithoutSkipsIsTheClosedForm) {
  for (ScheduleKind kind : kKinds)
    for (int pp = 1; pp <= 8; ++pp)
      for (int m = 1; m <= 32; ++m) {
        const auto result = simulate(make_schedule(kind, {pp, m, {}}));
        ASSERT_TRUE(result.ok) << result.error;
        EXPECT_NEAR(result.bubble, double(pp - 1) / double(m + pp - 1), 1e-12)
            << schedule_name(kind) << " pp=" << pp << " m=" << m;
        for (int s = 0; s < pp; ++s) EXPECT_DOUBLE_EQ(result.busy[s], 3.0 * m);
      }
}

// Interleaved 1F1B (virtual pipeline stages): pp <= 8 ranks, v <= 4 chunks each, m every multiple
// of pp up to 32, the skip layouts above on the pp·v virtual stages (one and two levels, same-rank
// producers and consumers, real hourglasses cut into pp·v pieces, random edges). Every list must
// run without deadlock, run each (micro-batch, chunk) of the rank once each way, keep the
// activations Megatron's warm-up implies and, on uniform chunks with free messages, idle exactly
// (pp − 1)/(v·m + pp − 1) of the time, i.e. (pp − 1)/(v·m) of the ideal step.
TEST(Schedule, InterleavedRunsWithoutDeadlockAndKeepsItsPromises) {
  int cases = 0;
  for (int pp = 2; pp <= 8; ++pp)
    for (int v = 1; v <= 4; ++v)
      for (int m = pp; m <= 32; m += pp)
        for (const auto& [label, skips] : skip_layouts(pp * v)) {
          const PipelineLayout layout{pp, m, skips, v};
          const auto lists = make_schedule(ScheduleKind::Interleaved, layout);
          const SimulationResult result = simulate(lists);
          const std::string where = "interleaved pp=" + std::to_string(pp) +
                                    " v=" + std::to_string(v) + " m=" + std::to_string(m) + " " +
                                    label;
          ASSERT_TRUE(result.ok) << where << ": " << result.error;
          ASSERT_EQ(static_cast<int>(lists.size()), pp) << where;
          for (int s = 0; s < pp; ++s) {
            std::map<int, int> forwards, backwards;  // chunk -> count
            for (const Instruction& in : lists[s]) {
              if (in.op == Op::Forward) ++forwards[in.chunk];
              if (in.op == Op::Backward) ++backwards[in.chunk];
            }
            ASSERT_EQ(static_cast<int>(forwards.size()), v) << where << " stage " << s;
            for (int c = 0; c < v; ++c) {
              EXPECT_EQ(forwards[c], m) << where << " stage " << s << " chunk " << c;
              EXPECT_EQ(backwards[c], m) << where << " stage " << s << " chunk " << c;
            }
            // Warm-up forwards plus the one of the first steady pair, at most all m·v.
            const int alive = std::min(2 * (pp - s - 1) + (v - 1) * pp + 1, m * v);
            EXPECT_EQ(result.max_alive[s], alive) << where << " stage " << s;
          }
          EXPECT_NEAR(result.bubble, theoretical_bubble(pp, m, v), 1e-12) << where;
          EXPECT_NEAR(result.makespan, 3.0 * (v * m + pp - 1), 1e-9) << where;
          ++cases;
        }
  EXPECT_GT(cases, 7 * 4 * 4 * 7);
}

// ZB-H1: every pp <= 8, m <= 32, every skip layout: no deadlock, each micro-batch once through
// F, B and W in that order, never more alive than 1F1B's peak (min(pp, m), its stage 0); with
// T_F = T_B = T_W = 1 the step takes m·3 + (pp − 1)(T_F + T_B − T_W) = 3m + pp − 1 (the paper's
// bubble; 1F1B's is (pp − 1)(T_F + T_B + T_W) = 3(pp − 1)) for m >= pp.
TEST(Schedule, ZeroBubbleH1RunsWithoutDeadlockAndCutsTheBubbleToAThird) {
  int cases = 0;
  for (int pp = 1; pp <= 8; ++pp)
    for (int m = 1; m <= 32; ++m)
      for (const auto& [label, skips] : skip_layouts(pp)) {
        const auto lists = make_schedule(ScheduleKind::ZeroBubbleH1, {pp, m, skips});
        const SimulationResult result = simulate(lists);
        const std::string where =
            "zbh1 pp=" + std::to_string(pp) + " m=" + std::to_string(m) + " " + label;
        ASSERT_TRUE(result.ok) << where << ": " << result.error;
        for (int s = 0; s < pp; ++s) {
          std::map<Op, int> count;
          for (const Instruction& in : lists[s]) ++count[in.op];
          EXPECT_EQ(count[Op::Forward], m) << where;
          EXPECT_EQ(count[Op::Backward], m) << where;
          EXPECT_EQ(count[Op::BackwardWeight], m) << where;
          EXPECT_LE(result.max_alive[s], std::min(pp, m)) << where << " stage " << s;
        }
        if (m >= pp && skips.empty()) {
          EXPECT_NEAR(result.makespan, 3.0 * m + pp - 1, 1e-9) << where;
          EXPECT_NEAR(result.bubble, theoretical_bubble(ScheduleKind::ZeroBubbleH1, pp, m), 1e-12)
              << where;
        }
        ++cases;
      }
  EXPECT_GT(cases, 8 * 32 * 7);
}

// The simulator holds W to its rules: after its B, once, and none missing.
TEST(Schedule, SimulatorChecksTheWeightGradients) {
  auto lists = make_schedule(ScheduleKind::ZeroBubbleH1, {2, 2, {}});
  auto w_at = [](const std::vector<Instruction>& list) {
    return std::find_if(list.begin(), list.end(),
                        [](const Instruction& in) { return in.op == Op::BackwardWeight; });
  };
  auto early = lists;  // stage 1's first W moved to the front
  const Instruction w = *w_at(early[1]);
  early[1].erase(w_at(early[1]));
  early[1].insert(early[1].begin(), w);
  EXPECT_NE(simulate(early).error.find("BackwardWeight before its Forward"), std::string::npos);
  auto missing = lists;
  missing[0].erase(w_at(missing[0]));
  EXPECT_NE(simulate(missing).error.find("weight gradients computed"), std::string::npos);
  auto twice = lists;
  twice[0].push_back(*w_at(twice[0]));
  EXPECT_NE(simulate(twice).error.find("second BackwardWeight"), std::string::npos);
}

// Evaluation's forward-only lists (validation during training): every pp <= 8, v <= 3, any m (not
// only multiples of pp), every skip layout: no deadlock, every message received once, each
// (micro-batch, chunk) forwarded exactly once on its rank and only one alive at a time.
TEST(Schedule, ForwardScheduleRunsEveryLayoutWithoutDeadlock) {
  int cases = 0;
  for (int pp = 1; pp <= 8; ++pp)
    for (int v = 1; v <= (pp > 1 ? 3 : 1); ++v)
      for (int m = 1; m <= 9; ++m)
        for (const auto& [label, skips] : skip_layouts(pp * v)) {
          const auto lists = make_forward_schedule({pp, m, skips, v});
          const SimulationResult result = simulate(lists, {}, /*evaluation=*/true);
          const std::string where = "forward pp=" + std::to_string(pp) + " v=" + std::to_string(v) +
                                    " m=" + std::to_string(m) + " " + label;
          ASSERT_TRUE(result.ok) << where << ": " << result.error;
          for (int s = 0; s < pp; ++s) {
            std::set<std::pair<int, int>> forwarded;
            for (const Instruction& in : lists[s]) {
              ASSERT_NE(in.op, Op::Backward) << where;
              if (in.op == Op::Forward) {
                EXPECT_TRUE(forwarded.insert({in.micro_batch, in.chunk}).second) << where;
              }
            }
            EXPECT_EQ(static_cast<int>(forwarded.size()), m * v) << where << " stage " << s;
            EXPECT_EQ(result.max_alive[s], 1) << where << " stage " << s;
          }
          ++cases;
        }
  EXPECT_GT(cases, 8 * 9 * 7);
  // Without the evaluation flag the simulator still demands a backward for every forward.
  EXPECT_FALSE(simulate(make_forward_schedule({2, 2, {}})).ok);
  EXPECT_THROW(make_forward_schedule({1, 2, {}, 2}), std::invalid_argument);
}

// NCCL matches a pair's messages in send order (no tags): receives_in_sender_order gives each
// stage, per sender, every one of its receives exactly once, in the sender's order, on every
// schedule (training and evaluation, skips, interleaving, zbh1). It is needed: on some layouts a
// receiver lists a sender's messages in another order than the sender sends them.
TEST(Schedule, ReceivesInSenderOrderCoverEveryMessageOnce) {
  int reordered = 0, cases = 0;
  auto check = [&](const std::vector<std::vector<Instruction>>& lists, const std::string& where) {
    const int pp = static_cast<int>(lists.size());
    for (int s = 0; s < pp; ++s) {
      const auto order = receives_in_sender_order(lists, s);
      ASSERT_EQ(static_cast<int>(order.size()), pp) << where;
      std::set<size_t> seen;
      for (int p = 0; p < pp; ++p) {
        for (size_t k = 0; k < order[p].size(); ++k) {
          const Instruction& in = lists[s].at(order[p][k]);
          EXPECT_EQ(in.peer_stage, p) << where;
          EXPECT_TRUE(seen.insert(order[p][k]).second) << where;
          reordered += k > 0 && order[p][k] < order[p][k - 1];
        }
      }
      size_t receives = 0;
      for (const Instruction& in : lists[s])
        receives += message_tag(in) >= 0 && in.peer_stage >= 0 && in.op != Op::SendActivation &&
                    in.op != Op::SendGradient && in.op != Op::SendSkip &&
                    in.op != Op::SendSkipGradient;
      EXPECT_EQ(seen.size(), receives) << where << " stage " << s;
    }
    ++cases;
  };
  for (int pp = 2; pp <= 6; ++pp)
    for (int m = 1; m <= 12; ++m)
      for (const auto& [label, skips] : skip_layouts(pp)) {
        const std::string where = " pp=" + std::to_string(pp) + " m=" + std::to_string(m) + label;
        for (ScheduleKind kind :
             {ScheduleKind::GPipe, ScheduleKind::OneFOneB, ScheduleKind::ZeroBubbleH1})
          check(make_schedule(kind, {pp, m, skips}), schedule_name(kind) + where);
        check(make_forward_schedule({pp, m, skips}), "forward" + where);
      }
  for (int pp = 2; pp <= 4; ++pp)
    for (int v = 2; v <= 3; ++v)
      for (int m = pp; m <= 3 * pp; m += pp)
        for (const auto& [label, skips] : skip_layouts(pp * v))
          check(make_schedule(ScheduleKind::Interleaved, {pp, m, skips, v}),
                "interleaved pp=" + std::to_string(pp) + " v=" + std::to_string(v) + label);
  EXPECT_GT(cases, 1000);
  EXPECT_GT(reordered, 0);  // the receiver's own order would not do
  // A receive nobody sends is a schedule bug, named.
  auto lists = make_schedule(ScheduleKind::OneFOneB, {2, 2, {}});
  std::erase_if(lists[0], [](const Instruction& in) { return in.op == Op::SendActivation; });
  EXPECT_THROW(receives_in_sender_order(lists, 1), std::logic_error);
}

// v = 2 halves the bubble of 1F1B at the same m (to first order in pp / m): pp = 4, m = 8.
TEST(Schedule, InterleavingShrinksTheBubble) {
  const SimulationResult one = simulate(make_schedule(ScheduleKind::OneFOneB, {4, 8, {}}));
  const SimulationResult two = simulate(make_schedule(ScheduleKind::Interleaved, {4, 8, {}, 2}));
  ASSERT_TRUE(one.ok && two.ok) << one.error << two.error;
  EXPECT_DOUBLE_EQ(one.bubble, 3.0 / 11.0);
  EXPECT_DOUBLE_EQ(two.bubble, 3.0 / 19.0);
}

// Under interleaving activation_message is indexed by virtual-stage boundary: pp = 2, v = 2 has
// boundaries 0 (rank 0 -> 1), 1 (rank 1's chunk 0 -> rank 0's chunk 1) and 2 (rank 0 -> 1). A
// cost on boundary 1 alone must delay the step (by rank pair it would be link 0's, and free).
TEST(Schedule, InterleavedMessagesCostByVirtualBoundary) {
  const auto lists = make_schedule(ScheduleKind::Interleaved, {2, 2, {}, 2});
  const SimulationResult free = simulate(lists);
  SimulationCosts costs;
  costs.activation_message = {0, 10, 0};
  const SimulationResult slow = simulate(lists, costs);
  ASSERT_TRUE(free.ok && slow.ok) << free.error << slow.error;
  EXPECT_GE(slow.makespan, free.makespan + 10);
  costs.activation_message = {0, 0, 0, 10};  // no boundary 3 with 4 virtual stages
  EXPECT_DOUBLE_EQ(simulate(lists, costs).makespan, free.makespan);
}

// A skip between two chunks of one rank is not a message; one between ranks is, in both
// directions, tagged with the sender's chunk. pp = 2, v = 2: virtual stages 0, 1, 2, 3 on ranks
// 0, 1, 0, 1; level 0 from virtual 0 to 2 (rank 0 both), level 1 from 1 to 2 (rank 1 -> 0).
TEST(Schedule, InterleavedSkipsBetweenChunks) {
  const auto lists = make_schedule(ScheduleKind::Interleaved, {2, 2, {{0, 0, 2}, {1, 1, 2}}, 2});
  int skips = 0, skip_grads = 0;
  for (int s = 0; s < 2; ++s)
    for (const Instruction& in : lists[s]) {
      EXPECT_NE(in.skip_level, 0) << "stage " << s << ": " << to_string(in);
      if (in.op == Op::SendSkip) {
        ++skips;
        EXPECT_EQ(s, 1);
        EXPECT_EQ(in.chunk, 0);
        EXPECT_EQ(in.peer_chunk, 1);
      }
      if (in.op == Op::SendSkipGradient) {
        ++skip_grads;
        EXPECT_EQ(s, 0);
        EXPECT_EQ(in.chunk, 1);
        EXPECT_EQ(in.peer_chunk, 0);
      }
    }
  EXPECT_EQ(skips, 2);
  EXPECT_EQ(skip_grads, 2);
  EXPECT_TRUE(simulate(lists).ok);
}

TEST(Schedule, InterleavedRejectsBadLayouts) {
  EXPECT_THROW(make_schedule(ScheduleKind::Interleaved, {2, 3, {}, 2}), std::invalid_argument);
  EXPECT_THROW(make_schedule(ScheduleKind::Interleaved, {1, 4, {}, 2}), std::invalid_argument);
  EXPECT_THROW(make_schedule(ScheduleKind::Interleaved, {2, 4, {}, 9}), std::invalid_argument);
  EXPECT_THROW(make_schedule(ScheduleKind::OneFOneB, {2, 4, {}, 2}), std::invalid_argument);
  EXPECT_THROW(make_schedule(ScheduleKind::Interleaved, {2, 4, {{0, 0, 4}}, 2}),
               std::invalid_argument);
  EXPECT_NO_THROW(make_schedule(ScheduleKind::Interleaved, {2, 4, {{0, 0, 3}}, 2}));
}

SimulationCosts uniform(int stages, double forward, double backward) {
  return {std::vector<double>(stages, forward), std::vector<double>(stages, backward)};
}

// The planner's event simulation (plan/predict.cpp runs simulate() with costs). The closed form:
// on S uniform stages with m micro-batches and free messages both schedules take
// (m + S − 1)(f + b) and idle (S − 1)/(m + S − 1) of the time. Integer-valued costs keep every sum
// exact, so the makespan must match to the last bit; per-op costs through `compute` that equal
// the per-stage ones change nothing.
TEST(Schedule, EventSimulationReproducesTheClosedFormBubble) {
  const std::pair<double, double> costs[] = {{1, 2}, {3, 5}, {2, 2}, {0.5, 1.25}};
  for (ScheduleKind kind : kKinds)
    for (int S = 1; S <= 8; ++S)
      for (int m = 1; m <= 16; ++m)
        for (auto [f, b] : costs) {
          SCOPED_TRACE(std::string(schedule_name(kind)) + " S " + std::to_string(S) + " m " +
                       std::to_string(m) + " f " + std::to_string(f) + " b " + std::to_string(b));
          const auto lists = make_schedule(kind, PipelineLayout{S, m, {}});
          SimulationCosts free_messages = uniform(S, f, b);
          free_messages.activation_message.assign(S, 0.0);
          const SimulationResult sim = simulate(lists, free_messages);
          ASSERT_TRUE(sim.ok) << sim.error;
          EXPECT_EQ(sim.makespan, (m + S - 1) * (f + b));
          EXPECT_NEAR(sim.bubble, theoretical_bubble(S, m), 1e-12);
          // 1F1B keeps min(S − s, m) micro-batches alive on stage s, GPipe all m.
          for (int s = 0; s < S; ++s)
            EXPECT_EQ(sim.max_alive[s], kind == ScheduleKind::GPipe ? m : std::min(S - s, m));
          SimulationCosts per_op;
          per_op.compute = [f, b](int, const Instruction& in) {
            return in.op == Op::Forward ? f : b;
          };
          const SimulationResult hooked = simulate(lists, per_op);
          ASSERT_TRUE(hooked.ok) << hooked.error;
          EXPECT_EQ(hooked.makespan, sim.makespan);
          EXPECT_EQ(hooked.finish, sim.finish);
        }
  // Interleaved, every chunk costing f and b: (v·m + S − 1)(f + b), bubble (S − 1)/(v·m + S − 1).
  for (int S = 2; S <= 8; ++S)
    for (int v = 1; v <= 4; ++v)
      for (int m = S; m <= 16; m += S)
        for (auto [f, b] : costs) {
          SCOPED_TRACE("interleaved S " + std::to_string(S) + " v " + std::to_string(v) + " m " +
                       std::to_string(m) + " f " + std::to_string(f) + " b " + std::to_string(b));
          SimulationCosts per_op;
          per_op.compute = [f, b](int, const Instruction& in) {
            return in.op == Op::Forward ? f : b;
          };
          const SimulationResult sim = simulate(
              make_schedule(ScheduleKind::Interleaved, PipelineLayout{S, m, {}, v}), per_op);
          ASSERT_TRUE(sim.ok) << sim.error;
          EXPECT_EQ(sim.makespan, (v * m + S - 1) * (f + b));
          EXPECT_NEAR(sim.bubble, theoretical_bubble(S, m, v), 1e-12);
        }
}

// GPipe with a message cost c on every link: the fill and the drain each cross S − 1 links.
TEST(Schedule, GPipeMessageCostAddsTwoCrossingsPerLink) {
  for (int S = 2; S <= 6; ++S)
    for (int m = 1; m <= 8; ++m) {
      const double f = 2, b = 4, c = 0.5;  // c < f: links never queue
      SimulationCosts costs = uniform(S, f, b);
      costs.activation_message.assign(S - 1, c);
      const SimulationResult sim =
          simulate(make_schedule(ScheduleKind::GPipe, PipelineLayout{S, m, {}}), costs);
      ASSERT_TRUE(sim.ok) << sim.error;
      EXPECT_DOUBLE_EQ(sim.makespan, (m + S - 1) * (f + b) + 2 * (S - 1) * c);
    }
}

// A link carries one message at a time: a slow link queues the second micro-batch.
TEST(Schedule, MessagesQueueOnTheirLink) {
  SimulationCosts costs = uniform(2, 1, 1);
  costs.activation_message = {3};
  const SimulationResult sim =
      simulate(make_schedule(ScheduleKind::GPipe, PipelineLayout{2, 2, {}}), costs);
  ASSERT_TRUE(sim.ok) << sim.error;
  // Stage 0: F0 0-1, F1 1-2 (sends arrive at 4 and 7). Stage 1: F0 4-5, F1 7-8, B0 8-9,
  // B1 9-10 (gradients arrive at 12 and 15). Stage 0: B0 12-13, B1 15-16.
  EXPECT_EQ(sim.makespan, 16);
  EXPECT_EQ(sim.finish[1], 10);
}

// A skip's message cost delays its consumer when the skip arrives after the activation chain.
TEST(Schedule, SlowSkipMessagesDelayTheirConsumer) {
  SimulationCosts costs = uniform(3, 1, 1);
  costs.skip_message = {10};
  const SimulationResult sim =
      simulate(make_schedule(ScheduleKind::GPipe, PipelineLayout{3, 1, {{0, 0, 2}}}), costs);
  ASSERT_TRUE(sim.ok) << sim.error;
  // Stage 2 waits for the skip (sent at 1, arrives at 11): F 11-12, B 12-13; its skip gradient
  // reaches stage 0 at 23, after stage 1's gradient (14): B 23-24.
  EXPECT_EQ(sim.finish[2], 13);
  EXPECT_EQ(sim.makespan, 24);
}

// The per-op hook: a slower last backward on stage 1 delays stage 0 by the difference.
TEST(Schedule, PerOpComputeCosts) {
  const auto lists = make_schedule(ScheduleKind::OneFOneB, PipelineLayout{2, 4, {}});
  SimulationCosts costs;
  costs.compute = [](int stage, const Instruction& in) {
    if (in.op == Op::Forward) return 1.0;
    return stage == 1 && in.micro_batch == 3 ? 7.0 : 2.0;
  };
  const SimulationResult sim = simulate(lists, costs);
  ASSERT_TRUE(sim.ok) << sim.error;
  EXPECT_EQ(sim.makespan, 3.0 * (4 + 1) + 5);
  EXPECT_EQ(sim.busy[1], 4 * 3.0 + 5);
}

TEST(Schedule, GPipeKeepsAllMicroBatchesOnStageZeroAndOneFOneBAtMostPp) {
  const PipelineLayout layout{4, 16, {{0, 0, 3}, {1, 1, 2}}};
  EXPECT_EQ(simulate(make_schedule(ScheduleKind::GPipe, layout)).max_alive[0], 16);
  EXPECT_EQ(simulate(make_schedule(ScheduleKind::OneFOneB, layout)).max_alive[0], 4);
}

TEST(Schedule, OneFOneBWithSkipOnThreeStagesHasTheExpectedInstructions) {
  // "2@1 4@3 2@1" on pp = 3: stack 0 + down/0 | stack 1 | up/0 + stack 2; skip 0 goes 0 -> 2.
  const auto lists = make_schedule(ScheduleKind::OneFOneB, {3, 2, {{0, 0, 2}}});
  auto text = [](const std::vector<Instruction>& list) {
    std::vector<std::string> lines;
    for (const auto& in : list) lines.push_back(to_string(in));
    return lines;
  };
  EXPECT_EQ(
      text(lists[0]),
      (std::vector<std::string>{
          "Forward mb 0", "SendActivation mb 0 to stage 1", "SendSkip mb 0 level 0 to stage 2",
          "Forward mb 1", "SendActivation mb 1 to stage 1", "SendSkip mb 1 level 0 to stage 2",
          "RecvGradient mb 0 from stage 1", "RecvSkipGradient mb 0 level 0 from stage 2",
          "Backward mb 0", "RecvGradient mb 1 from stage 1",
          "RecvSkipGradient mb 1 level 0 from stage 2", "Backward mb 1"}));
  EXPECT_EQ(text(lists[2]),
            (std::vector<std::string>{
                "RecvActivation mb 0 from stage 1", "RecvSkip mb 0 level 0 from stage 0",
                "Forward mb 0", "Backward mb 0", "SendGradient mb 0 to stage 1",
                "SendSkipGradient mb 0 level 0 to stage 0", "RecvActivation mb 1 from stage 1",
                "RecvSkip mb 1 level 0 from stage 0", "Forward mb 1", "Backward mb 1",
                "SendGradient mb 1 to stage 1", "SendSkipGradient mb 1 level 0 to stage 0"}));
}

TEST(Schedule, SameStageSkipNeedsNoMessages) {
  const auto lists = make_schedule(ScheduleKind::OneFOneB, {2, 4, {{0, 1, 1}}});
  for (const auto& list : lists)
    for (const auto& in : list) EXPECT_EQ(in.skip_level, -1) << to_string(in);
}

TEST(Schedule, SimulatorFindsTheDeadlockOfASkipSentTooLate) {
  // Move stage 0's skip sends behind its backwards: stage 2 then waits for the skip of mb 0
  // while stage 0 waits for the gradient of mb 0, which needs stage 2's backward.
  auto lists = make_schedule(ScheduleKind::OneFOneB, {3, 4, {{0, 0, 2}}});
  std::vector<Instruction> kept, late;
  for (const auto& in : lists[0]) (in.op == Op::SendSkip ? late : kept).push_back(in);
  kept.insert(kept.end(), late.begin(), late.end());
  lists[0] = kept;
  const auto result = simulate(lists);
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(result.deadlock);
  EXPECT_NE(result.error.find("stage 2 instruction 1 (RecvSkip mb 0 level 0 from stage 0) waits"),
            std::string::npos)
      << result.error;
  EXPECT_NE(result.error.find("stage 0 instruction"), std::string::npos) << result.error;
}

TEST(Schedule, SimulatorFindsABlockingReceiveCycle) {
  const std::vector<std::vector<Instruction>> lists = {{{Op::RecvGradient, 0, 1, -1},
                                                        {Op::Forward, 0, -1, -1},
                                                        {Op::SendActivation, 0, 1, -1},
                                                        {Op::Backward, 0, -1, -1}},
                                                       {{Op::RecvActivation, 0, 0, -1},
                                                        {Op::Forward, 0, -1, -1},
                                                        {Op::Backward, 0, -1, -1},
                                                        {Op::SendGradient, 0, 0, -1}}};
  const auto result = simulate(lists);
  EXPECT_TRUE(result.deadlock);
  EXPECT_NE(result.error.find("stage 0 instruction 0 (RecvGradient mb 0 from stage 1) waits for "
                              "stage 1 instruction 3"),
            std::string::npos)
      << result.error;
  EXPECT_NE(result.error.find("stage 1 instruction 0"), std::string::npos) << result.error;
}

TEST(Schedule, SimulatorRejectsUnmatchedDuplicatedAndMisaddressedMessages) {
  using L = std::vector<std::vector<Instruction>>;
  const Instruction F{Op::Forward, 0, -1, -1}, B{Op::Backward, 0, -1, -1};
  // A send nobody receives.
  auto r = simulate(L{{F, {Op::SendActivation, 0, 1, -1}, B}, {F, B}});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("sent but never received"), std::string::npos) << r.error;
  // A receive nobody sends.
  r = simulate(L{{F, B}, {{Op::RecvActivation, 0, 0, -1}, F, B}});
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.deadlock);
  EXPECT_NE(r.error.find("no stage ever sends"), std::string::npos) << r.error;
  // A message received from the wrong stage or with the wrong skip level is unmatched.
  r = simulate(L{{F, {Op::SendSkip, 0, 2, 0}, B}, {F, B}, {{Op::RecvSkip, 0, 1, 0}, F, B}});
  EXPECT_FALSE(r.ok);
  r = simulate(L{{F, {Op::SendSkip, 0, 1, 0}, B}, {{Op::RecvSkip, 0, 0, 1}, F, B}});
  EXPECT_FALSE(r.ok);
  // Sent twice.
  r = simulate(L{{F, {Op::SendActivation, 0, 1, -1}, {Op::SendActivation, 0, 1, -1}, B},
                 {{Op::RecvActivation, 0, 0, -1}, {Op::RecvActivation, 0, 0, -1}, F, B}});
  EXPECT_NE(r.error.find("sent twice"), std::string::npos) << r.error;
  // A peer that is not another stage.
  r = simulate(L{{F, {Op::SendActivation, 0, 0, -1}, B}});
  EXPECT_NE(r.error.find("peer is not another stage"), std::string::npos) << r.error;
  // Backward before forward, forward without backward.
  r = simulate(L{{B, F}});
  EXPECT_NE(r.error.find("Backward before its Forward"), std::string::npos) << r.error;
  r = simulate(L{{F}});
  EXPECT_NE(r.error.find("never freed"), std::string::npos) << r.error;
}

TEST(Schedule, CostsChangeTheBubble) {
  // A slow last stage (2x) makes the others idle: bubble above the uniform closed form.
  const auto lists = make_schedule(ScheduleKind::OneFOneB, {2, 8, {}});
  const auto uniform = simulate(lists);
  const auto slow = simulate(lists, {{1, 2}, {2, 4}});
  ASSERT_TRUE(slow.ok) << slow.error;
  EXPECT_GT(slow.bubble, uniform.bubble);
  EXPECT_DOUBLE_EQ(slow.busy[1], 8 * 6.0);
  EXPECT_FALSE(simulate(lists, {{1}, {}}).ok);  // wrong number of stages
}

TEST(Schedule, MessageTagsAreSharedBySendAndReceiveAndDistinctOtherwise) {
  // Interleaved: 4 chunks of 5 ranks, skips from virtual 0 to 19 and 6 to 13 (ranks 0 -> 4, 1 ->
  // 3).
  const std::pair<ScheduleKind, PipelineLayout> cases[] = {
      {ScheduleKind::GPipe, {5, 32, {{0, 0, 4}, {1, 1, 3}}}},
      {ScheduleKind::OneFOneB, {5, 32, {{0, 0, 4}, {1, 1, 3}}}},
      {ScheduleKind::Interleaved, {5, 30, {{0, 0, 19}, {1, 6, 13}}, 4}}};
  for (const auto& [kind, layout] : cases) {
    const auto lists = make_schedule(kind, layout);
    // (from, to, tag) -> the message it stands for: one message per key.
    std::map<std::tuple<int, int, int>, std::string> sent, received;
    for (int s = 0; s < 5; ++s)
      for (const auto& in : lists[s]) {
        const int tag = message_tag(in);
        if (in.op == Op::Forward || in.op == Op::Backward) {
          EXPECT_EQ(tag, -1);
          continue;
        }
        EXPECT_GE(tag, 0);
        EXPECT_LE(tag, 32767);
        const bool send = std::string(op_name(in.op)).rfind("Send", 0) == 0;
        auto key =
            send ? std::make_tuple(s, in.peer_stage, tag) : std::make_tuple(in.peer_stage, s, tag);
        auto& table = send ? sent : received;
        EXPECT_TRUE(table.emplace(key, to_string(in)).second) << "tag reused: " << to_string(in);
      }
    EXPECT_EQ(sent.size(), received.size());
    for (const auto& [key, what] : sent) EXPECT_TRUE(received.count(key)) << what;
  }
}

TEST(Schedule, RejectsBadLayouts) {
  EXPECT_THROW(make_schedule(ScheduleKind::GPipe, {0, 1, {}}), std::invalid_argument);
  EXPECT_THROW(make_schedule(ScheduleKind::GPipe, {2, 0, {}}), std::invalid_argument);
  EXPECT_THROW(make_schedule(ScheduleKind::GPipe, {2, 1, {{0, 1, 0}}}), std::invalid_argument);
  EXPECT_THROW(make_schedule(ScheduleKind::GPipe, {2, 1, {{0, 0, 2}}}), std::invalid_argument);
  EXPECT_THROW(make_schedule(ScheduleKind::GPipe, {2, 1, {{0, 0, 1}, {0, 0, 1}}}),
               std::invalid_argument);
  EXPECT_DOUBLE_EQ(theoretical_bubble(2, 8), 1.0 / 9.0);
  EXPECT_DOUBLE_EQ(theoretical_bubble(2, 8, 2), 1.0 / 17.0);
}

}  // namespace
}  // namespace hg
