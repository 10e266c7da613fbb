// The memory check of `hourglass train` (issue 12, trainer/memory_estimate.h): a layout whose
// estimate exceeds the node's memory is refused in setup with exit 2, before any parameter or
// activation is allocated; run.memory_limit_gb replaces the detected limit or skips the check.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/stage_model.h"
#include "parallel/partition.h"
#include "tests/support/training_runs.h"
#include "trainer/config.h"
#include "trainer/memory_estimate.h"
#include "trainer/pipeline_runtime.h"

namespace hg {
namespace {

using testing::Layout;
using testing::TempDir;

// The tiny model of testing::model_args: d 32, 2 heads, FFN 64, "1@1 1@2 1@1", window 8, chunk 4,
// seq_len 32, batch 4 in micro-batches of 2; long-short attention, dconv, linear resampling.
Config tiny_config(const std::map<std::string, std::string>& overrides = {}) {
  std::map<std::string, std::string> keys = {
      {"model.d_model", "32"}, {"model.heads", "2"}, {"model.ffn", "64"},
      {"model.window", "8"},   {"model.chunk", "4"}, {"model.hierarchy", "1@1 1@2 1@1"},
      {"train.seq_len", "32"}, {"train.batch", "4"}, {"train.micro_batch", "2"}};
  for (const auto& [key, value] : overrides) keys[key] = value;
  std::vector<std::string> args;
  for (const auto& [key, value] : keys) {
    args.push_back("--" + key);
    args.push_back(value);
  }
  return parse_config(args);
}

struct Estimates {
  std::vector<UnitPlan> plans;
  std::vector<int> first;
  std::vector<RankMemory> stages;
};
Estimates estimate_every_stage(const Config& config) {
  Estimates e;
  e.plans = plan_units(config.model, config.train.seq_len);
  e.first =
      partition_units(unit_infos(e.plans), config.parallel.pp * config.parallel.virtual_stages,
                      static_cast<int>(config.model.stacks.size()), config.parallel.stages);
  for (int s = 0; s < config.parallel.pp; ++s)
    e.stages.push_back(estimate_rank_memory(config, e.plans, e.first, s));
  return e;
}

// Hand-counted, per unit (fp32; activations per sample from the cost model of model/units.cpp):
//   embed      params 256·32 = 8192                     activations 4·L·d = 4·32·32 = 4096
//   block      params 4d + 4d·he + 2dF + F + d + 9he (dconv) + d·heads·rank + heads·rank + 4he
//              = 128 + 4096 + 4096 + 64 + 32 + 288 + 64 + 2 + 128 = 8898
//              activations 4·r·(12d + 2F + heads·(window + r/chunk·rank/2)):
//              r = 32: 4·32·(384 + 128 + 2·12) = 68608; r = 16: 4·16·(384 + 128 + 2·10) = 34048
//   norm       params 2d = 64                           activations 4·r·d: 4096 (r 32), 2048 (r 16)
//   down/0     params k·d·d + d = 2·32·32 + 32 = 2080   activations 4·32·d·3 = 12288
//   up/0       params k·d·d + k·d + 2d = 2176           activations 12288
//   head       params (d + 1)·256 = 8448                activations 4·L·(d + 256) = 36864
// pp 3 puts stack i on stage i: stage 0 = embed, block, norm, down/0; stage 1 = block, norm;
// stage 2 = up/0, block, norm, head.
TEST(MemoryEstimate, MatchesHandCountedNumbersForATinyModel) {
  const Estimates e = estimate_every_stage(tiny_config({{"parallel.pp", "3"}}));
  ASSERT_EQ(e.first, (std::vector<int>{0, 4, 6, 10}));
  const double params[3] = {8192 + 8898 + 64 + 2080, 8898 + 64, 2176 + 8898 + 64 + 8448};
  const double per_sample[3] = {4096 + 68608 + 4096 + 12288, 34048 + 2048,
                                12288 + 68608 + 4096 + 36864};
  // 1F1B with m = 4 / 2 = 2 micro-batches keeps min(pp - stage, m) alive: 2, 2, 1.
  const int live[3] = {2, 2, 1};
  for (int s = 0; s < 3; ++s) {
    const RankMemory& r = e.stages[s];
    EXPECT_DOUBLE_EQ(r.param_bytes, 16 * params[s]) << "stage " << s;
    EXPECT_DOUBLE_EQ(r.activation_bytes, 2 * per_sample[s]) << "stage " << s;
    EXPECT_EQ(r.live_micro_batches, live[s]) << "stage " << s;
    EXPECT_DOUBLE_EQ(r.transient_bytes, 0);
    EXPECT_DOUBLE_EQ(r.total(), 16 * params[s] + live[s] * 2 * per_sample[s]);
  }
}

// The parameter count is the model's own: the units a stage builds hold exactly that many numbers.
TEST(MemoryEstimate, ParametersAreThoseTheStageBuilds) {
  const Config config = tiny_config({{"parallel.pp", "3"}});
  const Estimates e = estimate_every_stage(config);
  for (int s = 0; s < 3; ++s) {
    StageModel stage(config.model, config.train.seq_len, e.first[s], e.first[s + 1]);
    double numbers = 0;
    for (const auto& [name, p] : stage.params().all()) numbers += double(p.value.numel());
    EXPECT_DOUBLE_EQ(e.stages[s].param_bytes, 16 * numbers) << "stage " << s;
  }
}

TEST(MemoryEstimate, ScheduleRecomputeAndTensorParallelism) {
  const double stage0_per_sample = 4096 + 68608 + 4096 + 12288;
  // GPipe keeps every micro-batch alive on every stage.
  for (const RankMemory& r :
       estimate_every_stage(tiny_config({{"parallel.pp", "3"}, {"parallel.schedule", "gpipe"}}))
           .stages)
    EXPECT_EQ(r.live_micro_batches, 2);
  // One rank, 1F1B: one micro-batch at a time; train.matformer = joint runs each at both widths
  // as slots of their own, which GPipe keeps alive together (2 micro-batches × 2 widths).
  EXPECT_EQ(estimate_every_stage(tiny_config()).stages[0].live_micro_batches, 1);
  EXPECT_EQ(estimate_every_stage(tiny_config({{"model.ffn_granularities", "1,2"},
                                              {"train.matformer", "joint"},
                                              {"parallel.schedule", "gpipe"}}))
                .stages[0]
                .live_micro_batches,
            4);
  // Recompute: the block keeps its input, 2·32·32·4 = 8192 bytes per micro-batch, and its whole
  // activations (2 · 68608) exist once, while it is recomputed.
  const RankMemory recomputed =
      estimate_every_stage(tiny_config({{"parallel.pp", "3"}, {"train.recompute", "blocks"}}))
          .stages[0];
  EXPECT_DOUBLE_EQ(recomputed.activation_bytes, 2 * (stage0_per_sample - 68608) + 8192);
  EXPECT_DOUBLE_EQ(recomputed.transient_bytes, 2 * 68608);
  EXPECT_DOUBLE_EQ(recomputed.activations(), 2 * recomputed.activation_bytes + 2 * 68608);
  // tp 2: the block's parameters halve, its activations are 10/34 replicated + 24/34 halved.
  const RankMemory sharded =
      estimate_every_stage(tiny_config({{"parallel.pp", "3"}, {"parallel.tp", "2"}})).stages[1];
  EXPECT_DOUBLE_EQ(sharded.param_bytes, 16 * (8898 / 2.0 + 64));
  EXPECT_NEAR(sharded.activation_bytes, 2 * (34048 * (10 + 12) / 34.0 + 2048), 1e-6);
}

// zbh1 keeps a micro-batch's weight-gradient operands until its W, which stage s defers past s
// more B's: min(pp, m) micro-batches on every stage (1F1B: min(pp - s, m), 2, 2, 1 here).
TEST(MemoryEstimate, ZeroBubbleKeepsMicroBatchesUntilTheirW) {
  const Estimates e =
      estimate_every_stage(tiny_config({{"parallel.pp", "3"}, {"parallel.schedule", "zbh1"}}));
  for (int s = 0; s < 3; ++s) EXPECT_EQ(e.stages[s].live_micro_batches, 2) << "stage " << s;
  const Estimates one = estimate_every_stage(tiny_config({{"parallel.pp", "3"}}));
  EXPECT_EQ(one.stages[2].live_micro_batches, 1);
  const auto lists = make_schedule(ScheduleKind::ZeroBubbleH1,
                                   {3, 2, skip_edges(unit_infos(e.plans), e.first), 1});
  const SimulationResult sim = simulate(lists);
  ASSERT_TRUE(sim.ok) << sim.error;
  for (int s = 0; s < 3; ++s) EXPECT_EQ(sim.max_alive[s], e.stages[s].live_micro_batches);
}

// Interleaved (pp 2 × 2 chunks, m = 2): rank r runs min(2(pp - r - 1) + (v - 1)·pp, m·v) warm-up
// forwards, then one forward before each backward: rank 0 all 4 (micro-batch, chunk) pairs,
// rank 1 2 + 1. Each pair is charged the rank's largest chunk.
// ZeRO-1: a replica keeps its 1/dp shard of the two moments, 8 + 8/dp bytes per parameter
// instead of 16; the activations do not change.
TEST(MemoryEstimate, ZeroOneKeepsAShardOfTheMoments) {
  const Estimates plain = estimate_every_stage(tiny_config({{"parallel.dp", "2"}}));
  const Estimates zero =
      estimate_every_stage(tiny_config({{"parallel.dp", "2"}, {"parallel.zero", "1"}}));
  EXPECT_DOUBLE_EQ(zero.stages[0].param_bytes, plain.stages[0].param_bytes * 12.0 / 16.0);
  EXPECT_DOUBLE_EQ(zero.stages[0].activation_bytes, plain.stages[0].activation_bytes);
}

TEST(MemoryEstimate, InterleavedCountsPairsOfTheSchedule) {
  const Config config = tiny_config({{"parallel.pp", "2"},
                                     {"parallel.schedule", "interleaved"},
                                     {"parallel.virtual_stages", "2"}});
  const Estimates e = estimate_every_stage(config);
  EXPECT_EQ(e.stages[0].live_micro_batches, 4);
  EXPECT_EQ(e.stages[1].live_micro_batches, 3);
  for (int s = 0; s < 2; ++s) {
    double largest = 0, params = 0;
    for (const auto& [u0, u1] : rank_chunks(e.first, 2, s)) {
      const ChunkMemory c = chunk_memory(config.model, e.plans, u0, u1, 2, 1, false, 4);
      largest = std::max(largest, c.activations);
      params += c.params;
    }
    EXPECT_DOUBLE_EQ(e.stages[s].activation_bytes, largest);
    EXPECT_DOUBLE_EQ(e.stages[s].param_bytes, 16 * params);
  }
}

TEST(MemoryEstimate, NodeMemoryIsTheSmallestOfMemTotalAndTheCgroupLimits) {
  TempDir dir;
  auto write = [&](const std::string& path, const std::string& text) {
    std::filesystem::create_directories(std::filesystem::path(dir / path).parent_path());
    std::ofstream(dir / path) << text;
  };
  write("proc/meminfo", "MemFree:  1 kB\nMemTotal:       1000 kB\nSwapTotal: 5 kB\n");
  EXPECT_DOUBLE_EQ(detect_node_memory(dir / "proc", dir / "cg").bytes, 1024000);
  EXPECT_EQ(detect_node_memory(dir / "proc", dir / "cg").source, "MemTotal");
  // v2: the process's cgroup says "max", its parent has the limit (a Slurm job's step).
  write("proc/self/cgroup", "0::/job/step\n");
  write("cg/job/step/memory.max", "max\n");
  write("cg/job/memory.max", "512000\n");
  NodeMemory node = detect_node_memory(dir / "proc", dir / "cg");
  EXPECT_DOUBLE_EQ(node.bytes, 512000);
  EXPECT_EQ(node.source, "cgroup limit " + (dir / "cg/job/memory.max"));
  // v1, the memory controller among others; "unlimited" is a huge number: the smaller wins.
  write("proc/self/cgroup", "5:cpu,memory:/docker/abc\n");
  write("cg/memory/memory.limit_in_bytes", "9223372036854771712\n");
  write("cg/memory/docker/abc/memory.limit_in_bytes", "256000\n");
  node = detect_node_memory(dir / "proc", dir / "cg");
  EXPECT_DOUBLE_EQ(node.bytes, 256000);
  EXPECT_EQ(detect_node_memory(dir / "nothing", dir / "nothing").bytes, 0);
}

TEST(MemoryEstimate, TheLimitKeyReadsWritesAndDefaultsForOldConfigs) {
  EXPECT_EQ(Config{}.run.memory_limit_gb, 0);
  const Config set = parse_config({"--run.memory_limit_gb", "-1"});
  EXPECT_EQ(set.run.memory_limit_gb, -1);
  EXPECT_NE(set.to_ini().find("\nmemory_limit_gb = -1\n"), std::string::npos);
  EXPECT_EQ(config_from_ini(set.to_ini()).run.memory_limit_gb, -1);
  // A checkpoint written before the key existed: its [run] section lacks it.
  EXPECT_EQ(config_from_ini("[run]\ndir = runs/old\nthreads = 1\n").run.memory_limit_gb, 0);
  EXPECT_THROW(parse_config({"--run.memory_limit_gb", "lots"}), UsageError);
  EXPECT_THROW(parse_config({"--run.memory_limit_gb", "inf"}), UsageError);
}

// (1) An estimate above --run.memory_limit_gb: exit 2 in setup on every rank, the message (from
// rank 0) names the estimate of each rank of the node, the limit and the key; no step runs.
TEST(MemoryCheck, ALimitBelowTheEstimateRefusesTheRunBeforeTraining) {
  TempDir dir;
  const auto r = testing::train(Layout{1, 3, 1}, testing::model_args(2, {{"run.dir", dir.path()}}) +
                                                     " --run.memory_limit_gb 0.001");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("memory: this layout needs about "), std::string::npos) << r.output;
  for (const char* part :
       {"rank 0 (stage 0): ", "rank 1 (stage 1): ", "rank 2 (stage 2): ", "parameters+optimizer",
        "live micro-batch", "but the node has 1.0 MiB (run.memory_limit_gb = 0.001)",
        "--run.memory_limit_gb (a value > 0"})
    EXPECT_NE(r.output.find(part), std::string::npos) << part << "\n" << r.output;
  EXPECT_EQ(r.output.find("step "), std::string::npos) << r.output;
  // Nothing was trained or saved (the run's directories may have been checked and created).
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir.path()))
    EXPECT_NE(entry.path().extension(), ".h5") << entry.path();
}

// (2) A model far beyond the machine under the detected limit: refused within seconds, and the
// largest child process this test ran stayed small (it allocated nothing of the model).
TEST(MemoryCheck, AHugeModelIsRefusedUnderTheDetectedLimitWithoutAllocating) {
  const std::map<std::string, std::string> huge = {{"model.d_model", "32768"},
                                                   {"model.heads", "128"},
                                                   {"train.batch", "8192"},
                                                   {"train.micro_batch", "8192"}};
  // About 13 G parameters (206 GB of state) and 400 GB of activations: skip only on a machine
  // that really has that much.
  const Estimates e = estimate_every_stage(tiny_config(huge));
  const NodeMemory node = detect_node_memory();
  if (node.bytes == 0 || node.bytes > e.stages[0].total())
    GTEST_SKIP() << "this machine has " << format_bytes(node.bytes) << ": the model fits";
  TempDir dir;
  const auto start = std::chrono::steady_clock::now();
  const auto r =
      testing::train(Layout{1, 1, 1}, testing::model_args(2, huge) + " --run.dir " + dir.path());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("memory: this layout needs about "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("but the node has " + format_bytes(node.bytes) + " (" + node.source),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("The parameters and optimizer state alone exceed it"), std::string::npos)
      << r.output;
  EXPECT_LT(seconds, 60) << "mpirun and setup only";
  rusage children{};
  getrusage(RUSAGE_CHILDREN, &children);
  EXPECT_LT(children.ru_maxrss, 1024L * 1024) << "KiB: a child allocated a large part of the model";
}

// (3) --run.memory_limit_gb -1 skips the check: the run the 0.001 GiB limit refuses trains; a
// limit > 0 above the estimate lets it train too.
TEST(MemoryCheck, ANegativeLimitSkipsTheCheckAndAGenerousOneAllows) {
  for (const char* limit : {"0.001", "-1", "64"}) {
    TempDir dir;
    const auto r =
        testing::train(Layout{1, 1, 1}, testing::model_args(1, {{"run.dir", dir.path()}}) +
                                            " --run.memory_limit_gb " + limit);
    if (std::string(limit) == "0.001") {
      EXPECT_EQ(r.exit_code, 2) << r.output;
      continue;
    }
    EXPECT_EQ(r.exit_code, 0) << limit << "\n" << r.output;
    EXPECT_NE(r.output.find("step     1/1"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("memory_limit_gb = " + std::string(limit)), std::string::npos);
  }
}

}  // namespace
}  // namespace hg
