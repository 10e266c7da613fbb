// The planner (plan/): the cost pieces, the layout search and the calibration file. Its
// event simulation is the schedule's (hg::simulate), tested with costs in
// tests/parallel/test_schedule.cpp.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "model/stage_model.h"
#include "model/units.h"
#include "trainer/memory_estimate.h"
#include "parallel/partition.h"
#include "plan/plan.h"
#include "tests/support/run_command.h"
#include "trainer/pipeline_runtime.h"

namespace hg {
namespace {

TEST(Plan, RingAllReduce) {
  EXPECT_EQ(ring_allreduce_seconds(1e9, 1, 1e9, 1e-3), 0);
  EXPECT_DOUBLE_EQ(ring_allreduce_seconds(1e9, 2, 1e9, 0), 1.0);
  EXPECT_DOUBLE_EQ(ring_allreduce_seconds(1e9, 4, 1e9, 1e-3), 1.5 + 6e-3);
  // The planner's: the ring's bandwidth, a tree's latency per call, or a measured one.
  EXPECT_EQ(allreduce_seconds(1e9, 1, 1e9, 1e-3, 10), 0);
  EXPECT_DOUBLE_EQ(allreduce_seconds(1e9, 2, 1e9, 1e-3, 3), 1.0 + 3 * 2e-3);
  EXPECT_DOUBLE_EQ(allreduce_seconds(1e9, 512, 1e9, 1e-3, 2), 2.0 * 511 / 512 + 2 * 18e-3);
  EXPECT_DOUBLE_EQ(allreduce_seconds(0, 512, 1e9, 1e-3, 4, 0.5), 2.0);
}

Config small_config(int batch = 8) {
  return parse_config({"--model.d_model", "64", "--model.heads", "4", "--model.ffn", "256",
                       "--model.hierarchy", "1@1 2@2 1@1", "--model.window", "16", "--model.chunk",
                       "8", "--train.seq_len", "64", "--train.batch", std::to_string(batch),
                       "--train.micro_batch", "1"});
}

ClusterSpec two_nodes_of_two() {
  ClusterSpec c;
  c.nodes = 2;
  c.devices_per_node = 2;
  c.device_flops = 1e12;
  c.device_memory = 1e9;
  c.intra_bandwidth = 1e10;
  c.inter_bandwidth = 1e9;
  c.latency = 1e-5;
  return c;
}

// The same with messages that cost nothing: what is left is compute and the schedule.
ClusterSpec two_nodes_of_two_free_links() {
  ClusterSpec c = two_nodes_of_two();
  c.latency = 0;
  c.intra_bandwidth = c.inter_bandwidth = 1e30;
  return c;
}

// The trainer's buckets (grad_buckets.h): filled last unit first, each all-reduced once the
// final backward has passed its units, one after the other; only what is left after the backward
// adds to the step.
TEST(Plan, GradientSyncOverlapsTheFinalBackward) {
  AllReduceCost cost;  // 1 s + 100 B/s per call
  cost.latency = 1;
  cost.seconds_per_byte = 0.01;
  // Everything in one bucket: it starts when the backward ends, all of it is exposed.
  GradientSync one = overlapped_gradient_sync({2, 2, 2}, {100, 100, 100}, 1000, cost);
  EXPECT_EQ(one.calls, 1);
  EXPECT_DOUBLE_EQ(one.seconds, 4);
  EXPECT_DOUBLE_EQ(one.exposed, 4);
  EXPECT_EQ(one.during_backward, 0);
  // A bucket per unit: the first two (ready at 2 and 4, taking 2 s each) end by 6, the backward's
  // end; the last one starts then.
  GradientSync per_unit = overlapped_gradient_sync({2, 2, 2}, {100, 100, 100}, 100, cost);
  EXPECT_EQ(per_unit.calls, 3);
  EXPECT_DOUBLE_EQ(per_unit.seconds, 6);
  EXPECT_DOUBLE_EQ(per_unit.exposed, 2);
  // Calls longer than the units queue: ready at 1, 2, 3; run 1-4, 4-7, 7-10; exposed 7.
  GradientSync queued = overlapped_gradient_sync({1, 1, 1}, {200, 200, 200}, 200, cost);
  EXPECT_DOUBLE_EQ(queued.exposed, 7);
  // ceil(bytes / bucket) calls; a unit bigger than a bucket fills several at once.
  GradientSync split = overlapped_gradient_sync({1, 5}, {250, 100}, 100, cost);
  EXPECT_EQ(split.calls, 4);  // 100, 100 at t = 1; 100 (50 + 50), 50 at t = 6
  EXPECT_DOUBLE_EQ(split.seconds, 4 + 3.5);
  EXPECT_DOUBLE_EQ(split.exposed, 3.5);  // 6-8 and 8-9.5: ends 3.5 after the backward
  // On a host the bytes term of the buckets started during the backward lengthens it (1 s each
  // for the first two), only their latency overlaps; copies (0.5 s per 100 B each way) are on
  // the rank either way.
  cost.on_host = true;
  GradientSync host = overlapped_gradient_sync({2, 2, 2}, {100, 100, 100}, 100, cost);
  EXPECT_DOUBLE_EQ(host.during_backward, 2);
  EXPECT_DOUBLE_EQ(host.exposed, 2);  // the last bucket, after a backward now 8 s long
  cost.copy_seconds_per_byte = 0.005;
  host = overlapped_gradient_sync({2, 2, 2}, {100, 100, 100}, 100, cost);
  EXPECT_DOUBLE_EQ(host.during_backward, 2 * (1 + 1));
  EXPECT_DOUBLE_EQ(host.exposed, 1 + 1 + 1);
  EXPECT_DOUBLE_EQ(host.seconds, 3 * 3);
}

// dp > 1 on one node: the planner charges the bucketed all-reduce, and a smaller bucket hides
// more of it behind the final backward.
TEST(Plan, GradientBucketsComeFromTheConfig) {
  Config config = small_config();
  ClusterSpec cluster = two_nodes_of_two();
  cluster.nodes = 1;
  cluster.device_flops = 1e8;     // a backward long enough to hide buckets behind
  cluster.intra_bandwidth = 1e6;  // and an all-reduce slow enough to matter
  PlanOptions options;
  options.dp = 2;
  options.micro_batches = {1};
  config.parallel.grad_bucket_mb = 1000;
  const LayoutPlan big = plan_layouts(config, cluster, options).layouts.at(0);
  EXPECT_GT(big.dp_seconds, 0);
  EXPECT_DOUBLE_EQ(big.dp_seconds, big.dp_total_seconds);  // one bucket, after the backward
  config.parallel.grad_bucket_mb = 0.01;
  const LayoutPlan small = plan_layouts(config, cluster, options).layouts.at(0);
  EXPECT_LT(small.dp_seconds, small.dp_total_seconds);
  EXPECT_LT(small.dp_seconds, big.dp_seconds);
  options.bucket_mb = 1000;  // plan.bucket_mb overrides the config's
  EXPECT_DOUBLE_EQ(plan_layouts(config, cluster, options).layouts.at(0).dp_seconds, big.dp_seconds);
}

TEST(Plan, EveryLayoutOfTheWorldIsRankedByStepTime) {
  const Config config = small_config();
  const PlanResult r = plan_layouts(config, two_nodes_of_two(), PlanOptions{});
  EXPECT_EQ(r.world, 4);
  ASSERT_FALSE(r.layouts.empty());
  bool seen_tp = false, seen_pp = false, seen_dp = false;
  for (size_t i = 0; i < r.layouts.size(); ++i) {
    const LayoutPlan& l = r.layouts[i];
    EXPECT_EQ(l.dp * l.pp * l.tp, 4);
    EXPECT_EQ(l.micro_batches * l.micro_batch * l.dp, 8);
    EXPECT_TRUE(l.fits) << l.note;
    EXPECT_GT(l.step_seconds, 0);
    EXPECT_GE(l.step_seconds, l.pipeline_seconds);
    EXPECT_GT(l.mfu, 0);
    EXPECT_LE(l.mfu, 1);
    EXPECT_NEAR(l.theory_bubble, theoretical_bubble(l.pp, l.micro_batches), 1e-12);
    if (i) {
      EXPECT_LE(r.layouts[i - 1].step_seconds, l.step_seconds);
    }
    seen_tp |= l.tp > 1;
    seen_pp |= l.pp > 1;
    seen_dp |= l.dp > 1;
    if (l.pp == 1) {
      EXPECT_EQ(l.bubble, 0);
    }
  }
  EXPECT_TRUE(seen_tp && seen_pp && seen_dp);
  // tp 4 spans two nodes of two devices: not evaluated, and said so.
  bool said = false;
  for (const std::string& s : r.skipped) said |= s.find("tp 4") != std::string::npos;
  EXPECT_TRUE(said);
}

TEST(Plan, LayoutsThatDoNotFitAreRejectedAndListedLast) {
  const Config config = small_config();
  ClusterSpec cluster = two_nodes_of_two();
  PlanOptions options;
  options.ranks = 1;
  // One rank holds every parameter (16 bytes each in fp32) plus activations.
  const PlanResult roomy = plan_layouts(config, cluster, options);
  ASSERT_FALSE(roomy.layouts.empty());
  const double params_bytes = roomy.layouts.front().param_bytes;
  EXPECT_NEAR(params_bytes, 16.0 * roomy.params, 1.0);
  // The smallest micro-batch needs the least activation memory; room for it alone.
  double least = 1e300;
  for (const LayoutPlan& l : roomy.layouts) least = std::min(least, l.memory_bytes);
  cluster.device_memory = least * 1.0001;
  const PlanResult tight = plan_layouts(config, cluster, options);
  int fitting = 0;
  for (size_t i = 0; i < tight.layouts.size(); ++i) {
    const LayoutPlan& l = tight.layouts[i];
    fitting += l.fits;
    if (!l.fits) {
      EXPECT_NE(l.note.find("needs"), std::string::npos);
      if (i + 1 < tight.layouts.size()) {
        EXPECT_FALSE(tight.layouts[i + 1].fits);
      }
    }
  }
  EXPECT_EQ(fitting, 1);
  EXPECT_EQ(tight.layouts.front().micro_batch, 1);
}

TEST(Plan, OneFOneBNeedsLessActivationMemoryThanGPipe) {
  const Config config = small_config(16);
  PlanOptions options;
  options.ranks = 4;
  options.pp = 4;
  options.micro_batches = {1};
  const PlanResult r = plan_layouts(config, two_nodes_of_two(), options);
  ASSERT_EQ(r.layouts.size(), 2u);
  const LayoutPlan& a = r.layouts[0];
  const LayoutPlan& b = r.layouts[1];
  const LayoutPlan& gpipe = a.schedule == ScheduleKind::GPipe ? a : b;
  const LayoutPlan& one = a.schedule == ScheduleKind::GPipe ? b : a;
  EXPECT_LT(one.memory_bytes, gpipe.memory_bytes);
}

// ZeRO-1 (parallel.zero 1 in the config planned): at dp = 4 each rank keeps 8 + 8/4 = 10 bytes per
// parameter instead of 16 and updates a quarter of the moments; the activations are unchanged.
TEST(Plan, ZeroOneShardsTheMomentsAndTheUpdate) {
  Config config = small_config(16);
  PlanOptions options;
  options.ranks = 4;
  options.dp = 4;
  options.micro_batches = {1};
  const PlanResult plain = plan_layouts(config, two_nodes_of_two(), options);
  config.parallel.zero = 1;
  const PlanResult zero = plan_layouts(config, two_nodes_of_two(), options);
  ASSERT_EQ(plain.layouts.size(), 1u);
  ASSERT_EQ(zero.layouts.size(), 1u);
  const LayoutPlan& a = plain.layouts[0];
  const LayoutPlan& b = zero.layouts[0];
  EXPECT_NEAR(b.param_bytes, a.param_bytes * 10.0 / 16.0, 1e-6 * a.param_bytes);
  EXPECT_NEAR(b.activation_bytes, a.activation_bytes, 1e-6 * a.activation_bytes);
  EXPECT_NEAR(b.optimizer_seconds, a.optimizer_seconds / 4, 1e-12 + 1e-9 * a.optimizer_seconds);
  EXPECT_EQ(parameter_state_bytes(false, 0, 4), 16.0);
  EXPECT_EQ(parameter_state_bytes(true, 1, 2), 8.0 + 4.0 + 4.0);
  EXPECT_EQ(parameter_state_bytes(false, 1, 1), 16.0);  // one replica: nothing to shard
}

// train.matformer joint (§1.5, §9.6) runs each micro-batch once per sub-model: the planner costs
// a block as the mean of its sub-models' costs, each the cost of a model with those widths
// (head counts and FFN widths, as `hourglass extract` writes it), and the step follows.
TEST(Plan, JointRunsAreCostedAtTheSubmodelsWidths) {
  auto joint = [](const std::string& heads) {
    Config c = small_config();
    c.model.ffn_granularities = {1, 2};
    c.model.head_granularities = {1, std::stoi(heads)};
    c.train.matformer = Matformer::Joint;
    return c;
  };
  const Config nested = joint("2"), ffn_only = joint("1");
  Config half = small_config();  // sub-model 1 alone: FFN 128 and 2 heads in every block
  half.model.ffn_widths.assign(4, 128);
  half.model.head_widths.assign(4, 2);
  const auto full_plans = plan_units(nested.model, 64), half_plans = plan_units(half.model, 64);
  auto mean = full_plans;
  average_over_submodels(mean, nested.model);
  int blocks = 0;
  for (size_t u = 0; u < mean.size(); ++u) {
    const double expected = u < half_plans.size() && mean[u].kind == UnitKind::Block
                                ? (full_plans[u].flops + half_plans[u].flops) / 2
                                : full_plans[u].flops;
    EXPECT_NEAR(mean[u].flops, expected, 1e-9 * expected) << mean[u].name;
    blocks += mean[u].kind == UnitKind::Block;
    if (mean[u].kind == UnitKind::Block) {
      EXPECT_LT(half_plans[u].params, full_plans[u].params) << "the extracted block is smaller";
      EXPECT_LT(mean[u].weight_flops, full_plans[u].weight_flops);
    }
  }
  EXPECT_EQ(blocks, 4);
  PlanOptions options;
  options.ranks = 1;
  options.micro_batches = {1};
  const PlanResult a = plan_layouts(nested, two_nodes_of_two_free_links(), options);
  const PlanResult b = plan_layouts(ffn_only, two_nodes_of_two_free_links(), options);
  ASSERT_EQ(a.layouts.size(), 1u);
  ASSERT_EQ(b.layouts.size(), 1u);
  EXPECT_LT(a.layouts[0].pipeline_seconds, b.layouts[0].pipeline_seconds)
      << "half the heads in the second sub-model cost less";
}

// Interleaved 1F1B (plan.schedules = interleaved): pp · v virtual stages, virtual stage k on rank
// k mod pp. On a model of many similar blocks with free links, v = 2 predicts a smaller bubble
// than 1F1B at the same (pp, m), and exactly the bubble of the schedule's own simulation of the
// virtual stages' cost-model compute.
TEST(Plan, InterleavedShrinksThePredictedBubble) {
  Config config = small_config(16);
  config.model = parse_config({"--model.d_model", "64", "--model.heads", "4", "--model.ffn", "256",
                               "--model.hierarchy", "4@1 8@2 4@1", "--model.window", "16",
                               "--model.chunk", "8"})
                     .model;
  // Messages free: the bubble is the schedule's and the partition's.
  const ClusterSpec cluster = two_nodes_of_two_free_links();
  PlanOptions options;
  options.dp = 1;
  options.schedules = {"1f1b", "interleaved"};
  options.virtual_stages = {2};
  const PlanResult r = plan_layouts(config, cluster, options);
  const std::vector<UnitPlan> plans = plan_units(config.model, config.train.seq_len);
  const std::vector<UnitInfo> infos = unit_infos(plans);
  int compared = 0;
  for (const LayoutPlan& l : r.layouts) {
    if (l.schedule != ScheduleKind::Interleaved) continue;
    EXPECT_EQ(l.virtual_stages, 2);
    EXPECT_EQ(l.micro_batches % l.pp, 0);
    EXPECT_NEAR(l.theory_bubble, theoretical_bubble(l.pp, l.micro_batches, 2), 1e-12);
    for (const LayoutPlan& one : r.layouts)
      if (one.schedule == ScheduleKind::OneFOneB && one.pp == l.pp && one.tp == l.tp &&
          one.micro_batch == l.micro_batch) {
        EXPECT_LT(l.bubble, one.bubble) << "pp " << l.pp << " m " << l.micro_batches;
        ++compared;
      }
    if (l.tp != 1) continue;
    // The simulator on the same virtual stages: cost-model compute, a third of it forward.
    const int V = l.pp * 2;
    const std::vector<int> first =
        partition_units(infos, V, static_cast<int>(config.model.stacks.size()), "");
    std::vector<double> seconds(V, 0);
    for (int k = 0; k < V; ++k)
      for (int u = first[k]; u < first[k + 1]; ++u)
        seconds[k] += plans[u].flops * l.micro_batch / (cluster.device_flops * cluster.efficiency);
    SimulationCosts costs;
    costs.compute = [&](int s, const Instruction& in) {
      const double t = seconds[in.chunk * l.pp + s];
      return in.op == Op::Forward ? t / 3 : t * 2 / 3;
    };
    const SimulationResult sim =
        simulate(make_schedule(ScheduleKind::Interleaved,
                               {l.pp, l.micro_batches, skip_edges(infos, first), 2}),
                 costs);
    ASSERT_TRUE(sim.ok) << sim.error;
    EXPECT_NEAR(l.bubble, sim.bubble, 1e-9) << "pp " << l.pp << " m " << l.micro_batches;
    EXPECT_NEAR(l.pipeline_seconds, sim.makespan, 1e-9 * sim.makespan);
  }
  EXPECT_GE(compared, 2);  // pp 2 (tp 2) and pp 4, each at several micro-batch sizes
}

// A layout interleaving cannot run is listed as not evaluated: more virtual stages than units
// (11 here: pp 4 x 3 = 12), or m not a multiple of pp (micro-batch 4: m = 2 on pp 4).
TEST(Plan, InterleavedSkipsLayoutsItCannotRun) {
  const Config config = small_config(8);
  PlanOptions options;
  options.pp = 4;
  options.schedules = {"interleaved"};
  options.virtual_stages = {2, 3};
  const PlanResult r = plan_layouts(config, two_nodes_of_two(), options);
  ASSERT_EQ(static_cast<int>(plan_units(config.model, config.train.seq_len).size()), 11);
  bool two = false;
  for (const LayoutPlan& l : r.layouts) {
    EXPECT_EQ(l.virtual_stages, 2);
    EXPECT_EQ(l.micro_batches % 4, 0);
    two |= l.micro_batches == 8;
  }
  EXPECT_TRUE(two);
  bool too_many = false, not_multiple = false;
  for (const std::string& s : r.skipped) {
    too_many |= s.find("interleaved x3: pp x virtual stages = 12") != std::string::npos;
    not_multiple |= s.find("micro_batch 4: 2 micro-batches per step, not a multiple of pp = 4") !=
                    std::string::npos;
  }
  EXPECT_TRUE(too_many && not_multiple);
}

// train.recompute = blocks: less activation memory, and every block's forward once more in the
// backward (so the step is longer by about the blocks' forward time).
TEST(Plan, RecomputeTradesActivationMemoryForAForward) {
  Config keep = small_config(16), recompute = keep;
  recompute.train.recompute = Recompute::Blocks;
  PlanOptions options;
  options.ranks = 4;
  options.pp = 4;
  options.micro_batches = {1};
  options.schedules = {"gpipe"};
  ClusterSpec slow = two_nodes_of_two();
  slow.device_flops = 1e9;  // compute-bound, so the extra forward shows in the step
  const PlanResult a = plan_layouts(keep, slow, options);
  const PlanResult b = plan_layouts(recompute, slow, options);
  ASSERT_EQ(a.layouts.size(), 1u);
  ASSERT_EQ(b.layouts.size(), 1u);
  EXPECT_LT(b.layouts[0].activation_bytes, 0.5 * a.layouts[0].activation_bytes);
  EXPECT_GT(b.layouts[0].step_seconds, 1.15 * a.layouts[0].step_seconds);
  EXPECT_LT(b.layouts[0].step_seconds, 1.5 * a.layouts[0].step_seconds);
}

TEST(Plan, SlowNetworksFavourFewerMessages) {
  const Config config = small_config();
  ClusterSpec cluster = two_nodes_of_two();
  cluster.inter_bandwidth = 1e5;  // everything that leaves a node is very slow
  PlanOptions options;
  const PlanResult r = plan_layouts(config, cluster, options);
  ASSERT_FALSE(r.layouts.empty());
  // Replicas sit on different nodes, so any dp > 1 all-reduces the gradients over the slow
  // link; a pipeline across the nodes only sends activations.
  const LayoutPlan& best = r.layouts.front();
  EXPECT_EQ(best.dp, 1);
  for (const LayoutPlan& l : r.layouts)
    if (l.dp == 4) {
      EXPECT_GT(l.step_seconds, 2 * best.step_seconds);
    }
}

TEST(Plan, CalibrationRoundTripsAndDrivesThePrediction) {
  testing::TempDir dir;
  Config config = small_config();
  config.run.threads = 1;
  PlanOptions once;
  once.repeats = 1;
  const Calibration c = calibrate(config, {1, 2}, once);
  const std::vector<UnitPlan> plans = plan_units(config.model, config.train.seq_len);
  ASSERT_EQ(c.units.size(), 2 * plans.size());
  for (size_t i = 0; i < c.units.size(); ++i) {
    const UnitTiming& t = c.units[i];
    EXPECT_GT(t.forward, 0) << t.name;
    EXPECT_GT(t.backward, 0) << t.name;
    EXPECT_GE(t.update, 0) << t.name;
    // zbh1's B and W, timed in a pass of their own (`backward` stays the fused time). Only the
    // linears' products are deferred: units without any (embedding, norms) have next to no W,
    // an empty run() of a few microseconds against a B of about as much: the bound allows a
    // millisecond of a loaded machine's preemption (it failed at 8.4 µs vs 10% of 74 µs).
    EXPECT_GT(t.input, 0) << t.name;
    if (plans[i % plans.size()].weight_flops > 0)
      EXPECT_GT(t.weight, 0) << t.name;
    else
      EXPECT_LT(t.weight, 0.1 * t.input + 1e-3) << t.name;
  }
  const std::string path = dir / "calibration.txt";
  write_calibration(path, c);
  const Calibration back = read_calibration(path);
  EXPECT_EQ(back.model_key, c.model_key);
  ASSERT_EQ(back.units.size(), c.units.size());
  for (size_t i = 0; i < c.units.size(); ++i) {
    EXPECT_EQ(back.units[i].name, c.units[i].name);
    EXPECT_EQ(back.units[i].micro_batch, c.units[i].micro_batch);
    EXPECT_NEAR(back.units[i].forward, c.units[i].forward, 1e-8 * c.units[i].forward);
    EXPECT_NEAR(back.units[i].input, c.units[i].input, 1e-8 * c.units[i].input);
    EXPECT_NEAR(back.units[i].weight, c.units[i].weight, 1e-8 * c.units[i].weight + 1e-15);
  }

  PlanOptions options;
  options.ranks = 1;
  options.calibration = path;
  options.micro_batches = {1};
  const PlanResult r = plan_layouts(config, two_nodes_of_two(), options);
  ASSERT_EQ(r.layouts.size(), 1u);
  double expected = 0;
  for (const UnitTiming& t : c.units)
    if (t.micro_batch == 1) expected += 8 * (t.forward + t.backward) + t.update;
  EXPECT_NEAR(r.layouts[0].step_seconds, expected, 1e-9 * expected);

  Config other = config;
  other.model.ffn = 128;
  EXPECT_THROW(plan_layouts(other, two_nodes_of_two(), options), UsageError);
}

// A calibration file for `config` by hand: every unit forward f, backward b, no update; with
// zbh1's B = b - w and W = w when w >= 0, without them (the format before zbh1) when w < 0.
std::string unit_times_file(const testing::TempDir& dir, const Config& config, double f, double b,
                            double w) {
  const std::string path = dir / ("times" + std::to_string(w) + ".txt");
  std::ofstream out(path);
  out << "model " << calibration_model_key(config) << "\nthreads 1\nstatistic median\n";
  for (const UnitPlan& p : plan_units(config.model, config.train.seq_len)) {
    out << "unit " << p.name << " 1 1 1 " << f << " " << b << " 0";
    if (w >= 0) out << " " << b - w << " " << w;
    out << "\n";
  }
  return path;
}

// A file from before zbh1 (7 numbers a unit) still reads, its B and W unknown (-1: the prediction
// estimates them); a line with one of the two numbers is refused.
TEST(Plan, OldCalibrationFilesStillRead) {
  testing::TempDir dir;
  const Config config = small_config();
  const Calibration old = read_calibration(unit_times_file(dir, config, 1e-3, 2e-3, -1));
  ASSERT_EQ(old.units.size(), plan_units(config.model, config.train.seq_len).size());
  for (const UnitTiming& t : old.units) {
    EXPECT_EQ(t.backward, 2e-3);
    EXPECT_EQ(t.input, -1);
    EXPECT_EQ(t.weight, -1);
  }
  const std::string bad_path = dir / "bad.txt";
  std::ofstream(bad_path) << "model x\nunit embed 1 1 1 0.1 0.2 0.0 0.15\n";
  EXPECT_THROW(read_calibration(bad_path), UsageError);
}

// zbh1 on pp 2 with free messages: with W > 0 its W's fill the 1F1B tail, so its step is shorter
// and the planner ranks it first; with W = 0 its B's are 1F1B's backwards and the steps are equal;
// an old file's W comes from the FLOP share and still makes zbh1 the faster. Its theory column is
// theoretical_bubble(zbh1, ...), and it keeps min(pp, m) micro-batches alive on every stage.
TEST(Plan, ZeroBubbleIsCostedWithBAndW) {
  testing::TempDir dir;
  const Config config = small_config(8);
  const ClusterSpec cluster = two_nodes_of_two_free_links();
  PlanOptions options;
  options.ranks = 2;
  options.pp = 2;
  options.micro_batches = {1};
  options.schedules = {"1f1b", "zbh1"};
  auto steps = [&](double w) {
    options.calibration = unit_times_file(dir, config, 1e-3, 2e-3, w);
    const PlanResult r = plan_layouts(config, cluster, options);
    EXPECT_EQ(r.layouts.size(), 2u);
    std::map<ScheduleKind, LayoutPlan> by_kind;
    for (const LayoutPlan& l : r.layouts) by_kind[l.schedule] = l;
    return std::make_pair(r.layouts.front().schedule, by_kind);
  };
  const auto [best, split] = steps(1e-3);
  const LayoutPlan& zb = split.at(ScheduleKind::ZeroBubbleH1);
  const LayoutPlan& one = split.at(ScheduleKind::OneFOneB);
  EXPECT_EQ(best, ScheduleKind::ZeroBubbleH1);
  EXPECT_LT(zb.step_seconds, one.step_seconds);
  EXPECT_LT(zb.bubble, one.bubble);
  EXPECT_DOUBLE_EQ(zb.theory_bubble, theoretical_bubble(ScheduleKind::ZeroBubbleH1, 2, 8));
  EXPECT_GT(zb.memory_bytes, one.memory_bytes);  // stage 1 keeps 2 micro-batches, not 1
  const auto [tie_best, no_weight] = steps(0);
  EXPECT_NEAR(no_weight.at(ScheduleKind::ZeroBubbleH1).step_seconds,
              no_weight.at(ScheduleKind::OneFOneB).step_seconds,
              1e-12 * no_weight.at(ScheduleKind::OneFOneB).step_seconds);
  // 1F1B's prediction depends on the fused backward alone: the same from all three files.
  const auto [old_best, old] = steps(-1);
  EXPECT_DOUBLE_EQ(old.at(ScheduleKind::OneFOneB).step_seconds, one.step_seconds);
  EXPECT_DOUBLE_EQ(no_weight.at(ScheduleKind::OneFOneB).step_seconds, one.step_seconds);
  EXPECT_LT(old.at(ScheduleKind::ZeroBubbleH1).step_seconds, one.step_seconds);
  EXPECT_EQ(old_best, ScheduleKind::ZeroBubbleH1);
}

// A tp shard is timed as built (its all-reduces over MPI_COMM_SELF), and a tp layout then uses
// the shard's time instead of 1/tp of the whole unit's.
TEST(Plan, CalibratedTensorParallelShards) {
  testing::TempDir dir;
  Config config = small_config();
  config.run.threads = 1;
  PlanOptions both;  // tp 1 and tp 2 in one calibration, interleaved
  both.repeats = 1;
  both.tp_sizes = {1, 2};
  const Calibration c = calibrate(config, {1}, both);
  const size_t U = plan_units(config.model, config.train.seq_len).size();
  ASSERT_EQ(c.units.size(), 2 * U);
  for (size_t i = 0; i < c.units.size(); ++i) {
    EXPECT_EQ(c.units[i].tp, i < U ? 1 : 2);
    EXPECT_GT(c.units[i].forward, 0) << c.units[i].name;
  }
  const std::string path = dir / "calibration.txt";
  write_calibration(path, c);
  ASSERT_EQ(read_calibration(path).units.size(), c.units.size());

  const ClusterSpec free_links = two_nodes_of_two_free_links();
  PlanOptions options;
  options.ranks = 2;
  options.tp = 2;
  options.micro_batches = {1};
  options.calibration = path;
  const PlanResult r = plan_layouts(config, free_links, options);
  ASSERT_EQ(r.layouts.size(), 1u);
  double expected = 0, update = 0;
  for (const UnitTiming& t : c.units) {
    if (t.tp != 2) continue;
    expected += 8 * (t.forward + t.backward);
    update += t.update;
  }
  EXPECT_NEAR(r.layouts[0].step_seconds, expected + update, 1e-6 * expected);
}

// Tensor parallelism all-reduces B·rows·d values twice per sharded unit in the forward and twice
// in the backward; with attention resampling the down/up units are sharded too, with queries of
// the other resolution and one more backward all-reduce for their keys/values.
TEST(Plan, TensorParallelAllReducesIncludeAttentionResampling) {
  Config plain = small_config(), resampling = plain;  // hierarchy 1@1 2@2 1@1, L 64, d 64
  resampling.model.resampling = Resampling::Attention;
  ClusterSpec cluster = two_nodes_of_two();
  cluster.latency = 0;  // all-reduce of B bytes on 2 ranks = B / bandwidth
  cluster.intra_bandwidth = 1e9;
  PlanOptions options;
  options.ranks = 2;
  options.tp = 2;
  options.micro_batches = {1};
  const PlanResult a = plan_layouts(plain, cluster, options);
  const PlanResult b = plan_layouts(resampling, cluster, options);
  ASSERT_EQ(a.layouts.size(), 1u);
  ASSERT_EQ(b.layouts.size(), 1u);
  // Rows per sample: blocks 64 + 32 + 32 + 64, each 4 all-reduces; down/0 queries 32 (x4) and
  // keys/values 64 (x1); up/0 queries 64 (x4) and keys/values 32 (x1).
  const double blocks = 4.0 * (64 + 32 + 32 + 64);
  const double resample = 4.0 * 32 + 64 + 4.0 * 64 + 32;
  const double per_row = 8 /* micro-batches */ * 64 /* d */ * 4 /* bytes */ / 1e9;
  EXPECT_NEAR(a.layouts[0].tp_seconds, blocks * per_row, 1e-12);
  EXPECT_NEAR(b.layouts[0].tp_seconds, (blocks + resample) * per_row, 1e-12);
}

// cluster.message_overhead is paid by every pipeline message, and by nothing else: one
// micro-batch through two GPipe stages crosses the boundary forward and backward in sequence
// (with the level-0 skip beside the activation, queued on the same link), so the step grows by
// 2 to 4 overheads; a layout without a pipeline does not change.
TEST(Plan, MessageOverheadIsPaidByPipelineMessagesOnly) {
  Config config = small_config(1);
  ClusterSpec plain = two_nodes_of_two(), slow = plain;
  slow.message_overhead = 1e-3;
  PlanOptions options;
  options.ranks = 2;
  options.micro_batches = {1};
  options.schedules = {"gpipe"};
  const PlanResult a = plan_layouts(config, plain, options);
  const PlanResult b = plan_layouts(config, slow, options);
  ASSERT_EQ(a.layouts.size(), b.layouts.size());
  int pipelines = 0;
  for (const LayoutPlan& x : a.layouts)
    for (const LayoutPlan& y : b.layouts) {
      if (x.dp != y.dp || x.pp != y.pp || x.tp != y.tp) continue;
      const double grew = y.step_seconds - x.step_seconds;
      if (x.pp == 1) {
        EXPECT_DOUBLE_EQ(grew, 0) << "dp " << x.dp << " tp " << x.tp;
      } else {
        ++pipelines;
        EXPECT_GE(grew, 2e-3 - 1e-12);
        EXPECT_LE(grew, 4e-3 + 1e-12);
      }
    }
  EXPECT_EQ(pipelines, 1);
  EXPECT_THROW(plan_main({"--cluster.message_overhead", "-1"}), UsageError);
}

TEST(Plan, CommandLineRejectsUnknownKeys) {
  EXPECT_THROW(plan_main({"--cluster.nodez", "2"}), UsageError);
  EXPECT_THROW(plan_main({"--plan.precision", "fp8"}), UsageError);
  EXPECT_THROW(plan_main({"--cluster.device_flops", "fast"}), UsageError);
  EXPECT_THROW(plan_main({"--cluster", "/nonexistent/cluster.ini"}), UsageError);
}

TEST(Plan, ClusterFileAndBinary) {
  testing::TempDir dir;
  {
    std::ofstream out(dir / "c.ini");
    out << "# two nodes\n[cluster]\nnodes = 2\ndevices_per_node = 2\ndevice_flops = 1T\n"
           "device_memory = 1G\n[plan]\ntop = 3\n";
  }
  const auto r = testing::run_command(
      testing::hourglass_binary() + " plan --model.d_model 64 --model.heads 4 --model.ffn 256 " +
      "--train.seq_len 96 --model.window 32 --cluster " + (dir / "c.ini"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("4 ranks planned"), std::string::npos) << r.output;
  int rows = 0;  // table rows start with their rank, right-aligned in 4 characters
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);)
    rows += line.size() > 5 && line.compare(0, 3, "   ") == 0 && std::isdigit(line[3]) &&
            line[4] == ' ';
  EXPECT_EQ(rows, 3) << r.output;  // [plan] top = 3
  const auto bad = testing::run_command(testing::hourglass_binary() + " plan --cluster.nodes 0");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("cluster.nodes"), std::string::npos) << bad.output;
}

// A cluster file is read as run configurations are (trainer/ini.h): each fault is one line naming
// the file, the section or key, and what a cluster file holds.
TEST(Plan, ClusterFileFaultsNameTheFileAndTheFix) {
  testing::TempDir dir;
  const std::string path = dir / "c.ini";
  const std::pair<const char*, std::vector<std::string>> cases[] = {
      {"[cluster]\nnodez = 2\n", {"cluster.nodez", "the keys of [cluster] are nodes"}},
      {"[gpu]\nnodes = 2\n", {"section [gpu]", "a cluster file has [cluster] and [plan]"}},
      {"nodes = 2\n", {"nodes", "outside a section", "[cluster] or [plan]"}},
      {"[cluster]\nnodes 2\n", {"'nodes 2'", "key = value lines under [cluster] and [plan]"}},
      {"[cluster]\nnodes = 2\nnodes = 3\n", {"cluster.nodes", "each key once"}},
  };
  for (const auto& [text, expected] : cases) {
    std::ofstream(path) << text;
    try {
      plan_main({"--cluster", path});
      ADD_FAILURE() << "accepted: " << text;
    } catch (const UsageError& e) {
      const std::string message = e.what();
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
      EXPECT_NE(message.find(path), std::string::npos) << message;
      for (const std::string& part : expected)
        EXPECT_NE(message.find(part), std::string::npos) << part << " not in: " << message;
    }
  }
}

// plan.schedules = interleaved with plan.virtual_stages, and zbh1, through the binary: an "int×2"
// and a "zbh1" row, and the v in the CSV; chunk counts outside [2, 8] and unknown schedules exit 2
// naming the key.
TEST(Plan, InterleavedAndZeroBubbleThroughTheBinary) {
  const std::string plan = testing::hourglass_binary() +
                           " plan --model.d_model 64 --model.heads 4 --model.ffn 256 "
                           "--train.seq_len 96 --model.window 32 --cluster.nodes 2 "
                           "--cluster.devices_per_node 2 --plan.pp 2 --plan.schedules "
                           "1f1b,interleaved,zbh1 ";
  const auto table = testing::run_command(plan + "--plan.virtual_stages 2 --plan.top 0");
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_NE(table.output.find(" int×2 "), std::string::npos) << table.output;
  EXPECT_NE(table.output.find(" zbh1 "), std::string::npos) << table.output;
  const auto csv = testing::run_command(plan + "--plan.virtual_stages 2 --plan.format csv");
  ASSERT_EQ(csv.exit_code, 0) << csv.output;
  EXPECT_NE(csv.output.find(",interleaved,2,"), std::string::npos) << csv.output;
  EXPECT_NE(csv.output.find(",1f1b,1,"), std::string::npos) << csv.output;
  EXPECT_NE(csv.output.find(",zbh1,1,"), std::string::npos) << csv.output;
  for (const char* bad : {"--plan.virtual_stages 9", "--plan.virtual_stages 1"}) {
    const auto r = testing::run_command(plan + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << r.output;
    EXPECT_NE(r.output.find("plan.virtual_stages"), std::string::npos) << r.output;
  }
  const auto unknown = testing::run_command(plan + "--plan.schedules zigzag");
  EXPECT_EQ(unknown.exit_code, 2) << unknown.output;
}

}  // namespace
}  // namespace hg
