// Pipeline parallelism (issue 4) and data-parallel replicas (issue 5) against the single-process
// reference: every layout runs 5 distributed_step()s on deterministic tokens and must give the
// losses, grad norms and final parameters of train_step() on one full StageModel, computed on the
// same rank, within 1e-5 relative. Also the activation count the runtime tracks (1F1B keeps at
// most pp micro-batches alive on the first stage, GPipe all m), bit-identical reruns, and the
// CLI's bad-configuration exits.
//
// One mpirun covers several layouts: each case runs on world ranks [0, dp·pp) while the others
// wait (tests/support/mpi_groups.h); the run and its checks are tests/support/distributed_run.h.
#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/enum_names.h"
#include "parallel/comm.h"
#include "tests/support/distributed_run.h"
#include "tests/support/mpi_groups.h"
#include "tests/support/reference_run.h"
#include "tests/support/run_command.h"
#include "tests/support/tiny_models.h"
#include "tests/support/training_runs.h"

namespace hg {
namespace {

constexpr uint64_t kTokenSeed = 1000;  // step s trains on random_tokens(.., kTokenSeed + s)

// A [model] section of small dimensions with the stacks of `hierarchy`.
std::string small_model(const std::string& hierarchy) {
  return "[model]\nvocab_size = 16\nd_model = 16\nheads = 2\nffn = 32\nwindow = 8\nchunk = 4\n"
         "hierarchy = " +
         hierarchy + "\n";
}
// 15 units (embed, 2 blocks, norm, down/0, 4 blocks, norm, up/0, 2 blocks, norm, head); the
// middle runs 8 rows.
const std::string kThreeStacks = small_model("2@1 4@3 2@1");
// Two shortening levels (32, 16 and 8 rows): 13 units, 5 natural stages, two skip edges.
const std::string kTwoLevels = small_model("1@1 1@2 2@4 1@2 1@1");

std::string train_section(int seq_len, int batch, int micro_batch, const std::string& extra = "") {
  return "[train]\nseq_len = " + std::to_string(seq_len) + "\nbatch = " + std::to_string(batch) +
         "\nmicro_batch = " + std::to_string(micro_batch) + "\nlr = 1e-3\nwarmup = 2\n" + extra;
}

struct Layout {
  Layout(std::string name_, std::string ini_, int dp_, int pp_, std::string schedule_,
         std::string stages_ = "", int virtual_stages_ = 1)
      : name(std::move(name_)),
        ini(std::move(ini_)),
        dp(dp_),
        pp(pp_),
        schedule(std::move(schedule_)),
        stages(std::move(stages_)),
        virtual_stages(virtual_stages_) {}
  std::string name;
  std::string ini;  // [model] and [train]
  int dp = 1;
  int pp = 1;
  std::string schedule;  // gpipe | 1f1b | interleaved | zbh1
  std::string stages;    // parallel.stages override; "" = automatic
  int virtual_stages = 1;
  int zero = 0;  // parallel.zero
  int ranks() const { return dp * pp; }
};

// The same layout under ZeRO-1 (parallel.zero 1).
Layout zero1(Layout layout) {
  layout.name += "_zero1";
  layout.zero = 1;
  return layout;
}

void PrintTo(const Layout& layout, std::ostream* os) { *os << layout.name; }

Config layout_config(const Layout& layout) {
  Config config = testing::tiny_config(layout.ini);
  config.parallel.dp = layout.dp;
  config.parallel.pp = layout.pp;
  if (!parse_enum(layout.schedule, config.parallel.schedule))
    throw std::invalid_argument("unknown schedule " + layout.schedule);
  config.parallel.stages = layout.stages;
  config.parallel.virtual_stages = layout.virtual_stages;
  config.parallel.zero = layout.zero;
  // Tiny buckets (~1,000 gradients): several per stage, so the overlapped all-reduce is exercised.
  config.parallel.grad_bucket_mb = 0.004;
  return config;
}

testing::DistributedRun run_distributed(const Config& config, MPI_Comm comm) {
  return testing::run_distributed(config, comm, testing::kLayoutSteps, kTokenSeed);
}

class PipelineMpi : public testing::LayoutMpiTest<Layout> {};

TEST_P(PipelineMpi, MatchesSingleProcess) {
  const Layout& layout = GetParam();
  const Config config = layout_config(layout);
  ASSERT_EQ(config.train.batch % (layout.dp * config.train.micro_batch), 0) << layout.name;
  const std::string where = testing::on_this_rank(layout.name);
  const auto check = [&](MPI_Comm comm) {
    const testing::DistributedRun got = run_distributed(config, comm);
    const testing::ReferenceRun& ref =
        testing::cached_single_process_run(config, testing::kLayoutSteps, kTokenSeed);
    std::string report =
        testing::compare_with_reference(got, ref, testing::kLayoutTolerance, where);
    report += testing::check_live(got, config.parallel.schedule, where);
    report += testing::check_data_parallel(got, where);
    // Together the stages of one pipeline hold every parameter exactly once.
    double held = static_cast<double>(got.model->params().count_elements());
    comm::allreduce_sum(&held, 1, comm);
    const double total = static_cast<double>(ref.model->params().count_elements());
    if (held != layout.dp * total)
      report += where + ": replicas' stages hold " + std::to_string(held) +
                " parameters, expected dp x " + std::to_string(total) + "\n";
    // ZeRO-1: the replicas' moment shards together hold each moment once (1/dp per replica).
    double moments = 0;
    for (const auto& [name, p] : got.model->params().all())
      moments += static_cast<double>(p.exp_avg.numel() + p.exp_avg_sq.numel());
    comm::allreduce_sum(&moments, 1, comm);
    if (moments != 2 * (layout.zero ? 1 : layout.dp) * total)
      report += where + ": the ranks hold " + std::to_string(moments) +
                " moment elements, expected " +
                std::to_string(2 * (layout.zero ? 1 : layout.dp) * total) + "\n";
    return report;
  };
  EXPECT_EQ(testing::reports_of_first_ranks(layout.ranks(), check), "");
}

std::vector<Layout> layouts() {
  const std::string three = kThreeStacks, two = kTwoLevels;
  const std::string joint = "[model]\nffn_granularities = 1,2\n";
  const std::string dropout = "[model]\ndropout = 0.1\n";
  return {
      // pp = 2: automatic balancing (the model has 3 stacks, so the cost model decides).
      {"pp2_gpipe_m4", three + train_section(24, 8, 2), 1, 2, "gpipe"},
      {"pp2_1f1b_m4", three + train_section(24, 8, 2), 1, 2, "1f1b"},
      {"pp2_1f1b_m8", three + train_section(24, 8, 1), 1, 2, "1f1b"},
      // pp = 3: the natural stages (pre stack + down, middle, up + post stack + head).
      {"pp3_gpipe_m4", three + train_section(24, 8, 2), 1, 3, "gpipe"},
      {"pp3_1f1b_m4", three + train_section(24, 8, 2), 1, 3, "1f1b"},
      {"pp3_gpipe_m8", three + train_section(24, 8, 1), 1, 3, "gpipe"},
      {"pp3_1f1b_m8_stages", three + train_section(24, 8, 1), 1, 3, "1f1b", "6,3,6"},
      // More stages than stacks: the cost model cuts inside stacks; the skip crosses several.
      {"pp4_1f1b_m8", three + train_section(24, 8, 1), 1, 4, "1f1b"},
      {"pp6_gpipe_m8", three + train_section(24, 8, 1), 1, 6, "gpipe"},
      // MatFormer joint: every micro-batch at both widths (8 schedule entries).
      {"pp3_1f1b_matformer_joint", three + joint + train_section(24, 8, 2, "matformer = joint\n"),
       1, 3, "1f1b"},
      // Two levels, pp = 5: skips 0 -> 4 and 1 -> 3.
      {"pp5_gpipe_m8", two + train_section(32, 8, 1), 1, 5, "gpipe"},
      {"pp5_1f1b_m5", two + train_section(32, 10, 2), 1, 5, "1f1b"},
      // Data parallel, alone and around a pipeline (dropout keyed by global sample).
      {"dp2_pp1", three + train_section(24, 8, 2), 2, 1, "1f1b"},
      {"dp4_pp1", three + train_section(24, 8, 2), 4, 1, "gpipe"},
      {"dp3_pp2_gpipe", three + train_section(24, 12, 2), 3, 2, "gpipe"},
      {"dp2_pp3_1f1b_dropout", three + dropout + train_section(24, 8, 1), 2, 3, "1f1b"},
      // Interleaved 1F1B: pp·v virtual stages, rank r holding r, r + pp, ... (15 units of the
      // three stacks in 4 or 6 pieces, the skip between chunks of different ranks or of one;
      // the two-level model's 13 units in 6 pieces, two skips).
      {"pp2_interleaved_v2_m4", three + train_section(24, 8, 2), 1, 2, "interleaved", "", 2},
      {"pp2_interleaved_v3_m4_stages", three + train_section(24, 8, 2), 1, 2, "interleaved",
       "2,3,2,2,3,3", 3},
      {"pp3_interleaved_v2_m6", three + train_section(24, 12, 2), 1, 3, "interleaved", "", 2},
      {"pp3_interleaved_v2_two_levels_m6", two + train_section(32, 6, 1), 1, 3, "interleaved", "",
       2},
      {"dp2_pp2_interleaved_v2_m4", three + dropout + train_section(24, 8, 1), 2, 2, "interleaved",
       "", 2},
      // Zero-bubble H1: B and W split (layers/weight_gradients.h).
      {"pp2_zbh1_m4", three + train_section(24, 8, 2), 1, 2, "zbh1"},
      {"pp3_zbh1_two_levels_m8", two + train_section(32, 8, 1), 1, 3, "zbh1"},
      {"dp2_pp2_zbh1_dropout", three + dropout + train_section(24, 8, 1), 2, 2, "zbh1"},
      {"pp3_zbh1_recompute", three + train_section(24, 8, 2, "recompute = blocks\n"), 1, 3, "zbh1"},
      {"pp3_zbh1_matformer_joint", three + joint + train_section(24, 8, 2, "matformer = joint\n"),
       1, 3, "zbh1"},
      // train.precision bf16 (§9.1): the same products on every layout, so the same bits; under
      // zbh1 the deferred W products take float32 operands where the fused backward reads the
      // bf16 copies it made once (layers/cpu/linear.cpp): the same bits too.
      {"pp3_1f1b_m4_bf16", three + train_section(24, 8, 2, "precision = bf16\n"), 1, 3, "1f1b"},
      {"dp2_pp2_bf16_dropout", three + dropout + train_section(24, 8, 1, "precision = bf16\n"), 2,
       2, "1f1b"},
      {"pp2_interleaved_v2_m4_bf16", three + train_section(24, 8, 2, "precision = bf16\n"), 1, 2,
       "interleaved", "", 2},
      {"pp3_zbh1_m4_bf16", three + train_section(24, 8, 2, "precision = bf16\n"), 1, 3, "zbh1"},
      // ZeRO-1 (§9.3): reduce-scattered buckets, moments and the update on shards, parameters
      // all-gathered; the same losses as the single process.
      zero1({"dp2_pp1", three + train_section(24, 8, 2), 2, 1, "1f1b"}),
      zero1({"dp4_pp1", three + train_section(24, 8, 2), 4, 1, "gpipe"}),
      zero1({"dp2_pp2_dropout", three + dropout + train_section(24, 8, 1), 2, 2, "1f1b"}),
      zero1({"dp2_pp2_zbh1_dropout", three + dropout + train_section(24, 8, 1), 2, 2, "zbh1"}),
      zero1({"dp3_pp2_gpipe", three + train_section(24, 12, 2), 3, 2, "gpipe"}),
      zero1({"dp2_pp2_interleaved_v2_m4", three + dropout + train_section(24, 8, 1), 2, 2,
             "interleaved", "", 2}),
  };
}

INSTANTIATE_TEST_SUITE_P(Layouts, PipelineMpi, ::testing::ValuesIn(layouts()),
                         [](const ::testing::TestParamInfo<Layout>& info) {
                           return info.param.name;
                         });

bool bit_identical(const testing::DistributedRun& a, const testing::DistributedRun& b) {
  for (int s = 0; s < testing::kLayoutSteps; ++s)
    if (a.metrics[s].loss != b.metrics[s].loss || a.metrics[s].grad_norm != b.metrics[s].grad_norm)
      return false;
  for (const auto& [name, p] : a.model->params().all()) {
    const Param& q = b.model->params().at(name);
    if (std::memcmp(p.value.data(), q.value.data(), p.value.numel() * sizeof(float)) != 0 ||
        std::memcmp(p.exp_avg.data(), q.exp_avg.data(), p.exp_avg.numel() * sizeof(float)) != 0)
      return false;
  }
  return true;
}

// `layout` run twice: the same bits (losses, grad norms, parameters, moments or moment shards).
void expect_same_bits_twice(const Layout& layout) {
  const Config config = layout_config(layout);
  const auto check = [&](MPI_Comm comm) {
    const testing::DistributedRun first = run_distributed(config, comm);
    const testing::DistributedRun second = run_distributed(config, comm);
    return bit_identical(first, second)
               ? std::string()
               : testing::on_this_rank(layout.name) + ": two runs of the same layout differ\n";
  };
  EXPECT_EQ(testing::reports_of_first_ranks(layout.ranks(), check), "");
}

// dp = 2 with dropout and pp = 3, so the all-reduce, the skips and the masks are all covered.
TEST(PipelineMpiDeterminism, SameLayoutTwiceIsBitIdentical) {
  const Layout layout{"dp2_pp3_dropout",
                      kThreeStacks + "[model]\ndropout = 0.1\n" + train_section(24, 8, 1), 2, 3,
                      "1f1b"};
  if (testing::world_size() < layout.ranks())
    GTEST_SKIP() << "needs " << layout.ranks() << " MPI ranks, has " << testing::world_size();
  expect_same_bits_twice(layout);
}

// ZeRO-1: the reduce-scatter, the sharded update and the all-gather repeat to the bit.
TEST(PipelineMpiDeterminism, ZeroOneSameLayoutTwiceIsBitIdentical) {
  const Layout layout =
      zero1({"dp2_pp2_dropout", kThreeStacks + "[model]\ndropout = 0.1\n" + train_section(24, 8, 1),
             2, 2, "1f1b"});
  if (testing::world_size() < layout.ranks())
    GTEST_SKIP() << "needs " << layout.ranks() << " MPI ranks, has " << testing::world_size();
  expect_same_bits_twice(layout);
}

// zbh1 computes every weight-gradient product with the same operands and, per parameter, in the
// same micro-batch order as 1F1B's fused backward (layers/weight_gradients.h): the same bits, with
// dropout, the data-parallel buckets (started by the final W) and a skip across stages.
TEST(PipelineMpiDeterminism, ZeroBubbleH1EqualsOneFOneBBitForBit) {
  const std::string ini = kThreeStacks + "[model]\ndropout = 0.1\n" + train_section(24, 8, 1);
  const Layout zbh1{"dp2_pp3_zbh1", ini, 2, 3, "zbh1"},
      one_f_one_b{"dp2_pp3_1f1b", ini, 2, 3, "1f1b"};
  if (testing::world_size() < zbh1.ranks())
    GTEST_SKIP() << "needs " << zbh1.ranks() << " MPI ranks, has " << testing::world_size();
  const auto check = [&](MPI_Comm comm) {
    const testing::DistributedRun a = run_distributed(layout_config(zbh1), comm);
    const testing::DistributedRun b = run_distributed(layout_config(one_f_one_b), comm);
    return bit_identical(a, b) ? std::string()
                               : testing::on_this_rank(zbh1.name) + ": zbh1 and 1f1b differ\n";
  };
  EXPECT_EQ(testing::reports_of_first_ranks(zbh1.ranks(), check), "");
}

// Activation memory, stated on its own: with 8 micro-batches on 2 stages, 1F1B never keeps more
// than pp on the first stage and GPipe keeps all 8 (the count StageModel's units track).
TEST(PipelineMpiMemory, OneFOneBBoundsLiveMicroBatches) {
  if (testing::world_size() < 2) GTEST_SKIP() << "needs 2 MPI ranks, has " << testing::world_size();
  for (const std::string schedule : {"1f1b", "gpipe"}) {
    const Layout layout{"memory_" + schedule, kThreeStacks + train_section(24, 8, 1), 1, 2,
                        schedule};
    const Config config = layout_config(layout);
    const auto check = [&](MPI_Comm comm) {
      const testing::DistributedRun got = run_distributed(config, comm);
      if (got.grid->stage() != 0) return std::string();
      const int64_t live = *std::max_element(got.max_live.begin(), got.max_live.end());
      const bool ok = schedule == "1f1b" ? live <= 2 : live == 8;
      return ok ? std::string()
                : schedule + ": first stage kept " + std::to_string(live) +
                      " micro-batches alive (m 8, pp 2)\n";
    };
    EXPECT_EQ(testing::reports_of_first_ranks(2, check), "");
  }
}

// ---- bad configurations through the real binary (serial tests that start mpirun) ----

struct Launch {
  int status = -1;  // exit status of mpirun, -1 if it did not exit normally
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// `mpirun -np ranks hourglass train args`, its stdout and stderr kept apart.
Launch launch_train(int ranks, const std::string& args) {
  const std::string base = ::testing::TempDir() + "hg_pipeline_cli_" + std::to_string(::getpid());
  const std::string command = testing::mpirun_prefix(ranks) + testing::hourglass_binary() +
                              " train " + args + " --run.dir " + base + "_run >" + base +
                              ".out 2>" + base + ".err";
  Launch l;
  const int raw = std::system(command.c_str());
  if (raw != -1 && WIFEXITED(raw)) l.status = WEXITSTATUS(raw);
  l.out = slurp(base + ".out");
  l.err = slurp(base + ".err");
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  return l;
}

int count_of(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

const std::string kCliModel =
    "--model.vocab_size 16 --model.d_model 16 --model.heads 2 --model.ffn 32 --model.window 8 "
    "--model.chunk 4 --train.seq_len 24 --train.steps 2 --data.dir /nonexistent ";

// Exit 2, exactly one error line (rank 0's), containing `expected`, and no training output.
void expect_usage_error(int ranks, const std::string& args, const std::string& expected) {
  const Launch l = launch_train(ranks, kCliModel + args);
  EXPECT_EQ(l.status, 2) << "stdout:\n" << l.out << "stderr:\n" << l.err;
  EXPECT_EQ(count_of(l.err, "hourglass train: error: "), 1) << l.err;
  EXPECT_NE(l.err.find(expected), std::string::npos) << "expected '" << expected << "' in\n"
                                                     << l.err;
  EXPECT_EQ(l.out.find("step "), std::string::npos) << l.out;
  EXPECT_EQ(l.err.find("rank 1"), std::string::npos) << l.err;
}

// zbh1's trace (log.trace) shows each micro-batch's B and W as separate slices on every stage.
TEST(PipelineCli, ZeroBubbleTraceShowsBAndWSlices) {
  testing::TempDir dir;
  const std::string trace = dir / "trace.json";
  const testing::CommandResult r =
      testing::train({1, 2, 1}, testing::model_args(1) + " --parallel.schedule zbh1 --log.trace " +
                                    trace + " --run.dir " + dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string text = slurp(trace);
  for (const char* slice : {"\"F0\"", "\"B0\"", "\"W0\"", "\"W1\""})
    EXPECT_EQ(count_of(text, slice), 2) << slice << " once per stage in\n" << text.substr(0, 2000);
}

TEST(PipelineCli, PpLargerThanUnitsExits2) {
  // "1@1" has 4 units (embed, block, norm, head); pp = 5 needs 5 ranks to get past the grid.
  expect_usage_error(5, "--model.hierarchy 1@1 --parallel.pp 5",
                     "parallel.pp = 5 is larger than the model's 4 units");
}

TEST(PipelineCli, MicroBatchNotDividingReplicaBatchExits2) {
  expect_usage_error(2,
                     "--model.hierarchy 2@1 --parallel.dp 2 --train.batch 6 --train.micro_batch 2",
                     "train.batch = 6: must be a multiple of parallel.dp x train.micro_batch = 4");
}

TEST(PipelineCli, DpNotDividingBatchExits2) {
  expect_usage_error(2,
                     "--model.hierarchy 2@1 --parallel.dp 2 --train.batch 5 --train.micro_batch 1",
                     "train.batch = 5: must be a multiple of parallel.dp x train.micro_batch = 2");
}

TEST(PipelineCli, StagesNotCoveringTheModelExits2) {
  expect_usage_error(2, "--model.hierarchy 2@1 --parallel.pp 2 --parallel.stages 2,2",
                     "parallel.stages = \"2,2\" covers 4 units but the model has 5");
}

TEST(PipelineCli, InterleavedWithMicroBatchesNotAMultipleOfPpExits2) {
  expect_usage_error(2,
                     "--model.hierarchy 2@1 --parallel.pp 2 --parallel.schedule interleaved "
                     "--parallel.virtual_stages 2 --train.batch 3 --train.micro_batch 1",
                     "the interleaved schedule needs a multiple of parallel.pp = 2");
}

TEST(PipelineCli, LayoutNotMatchingWorldExits2) {
  expect_usage_error(2, "--model.hierarchy 2@1 --parallel.pp 3",
                     "= 1 · 3 · 1 = 3 but the job has 2 MPI ranks");
}

}  // namespace
}  // namespace hg
