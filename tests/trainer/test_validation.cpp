// Validation during training (ARCHITECTURE.md §9.5, issue 18): eval.every N scores the first
// eval.windows windows of eval.split through the training layout's own stages, forward only. The
// score must be the one `hourglass eval` gives the checkpoint of that step, on every layout, and
// scoring must not change training by a single bit.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "tests/support/training_runs.h"

namespace hg {
namespace {

using testing::CommandResult;
using testing::Layout;
using testing::TempDir;

// `hourglass eval --json` of a checkpoint on the first `windows` windows of the valid split:
// {"loss": ..., "bpc": ..., "tokens": ...} is the last line.
double eval_loss(const std::string& checkpoint, int windows, const std::string& extra = "") {
  const CommandResult r = testing::run_command(
      testing::without_mpi_environment() + testing::hourglass_binary() + " eval --checkpoint " +
      checkpoint + " --data " + testing::corpus_dir() + " --max-windows " +
      std::to_string(windows) + " --batch 2 --json" + extra);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const size_t at = r.output.rfind("{\"loss\": ");
  return at == std::string::npos ? NAN : std::stod(r.output.substr(at + 9));
}

std::string checkpoint_at(const TempDir& run, int step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08d.h5", step);
  return run / ("checkpoints/" + std::string(name));
}

struct ValidationCase {
  Layout layout;
  std::string extra;  // further flags
  std::string name;
};

// 5 windows: not a multiple of dp = 2 (replicas score 2 and 3) nor of micro_batch = 2.
constexpr int kWindows = 5;

TEST(Validation, EqualsHourglassEvalOfThatStepsCheckpointOnEveryLayout) {
  const ValidationCase cases[] = {
      {{1, 1, 1}, "", "single process"},
      {{1, 3, 1}, "", "pp 3 (skip from stage 0 to 2)"},
      {{2, 1, 1}, "", "dp 2"},
      {{1, 1, 2}, "", "tp 2"},
      {{1, 2, 1},
       " --parallel.schedule interleaved --parallel.virtual_stages 2",
       "pp 2 interleaved v 2"},
      {{1, 2, 1}, " --parallel.schedule gpipe --train.recompute blocks", "pp 2 gpipe recompute"},
  };
  for (const ValidationCase& c : cases) {
    TempDir run;
    const CommandResult r = testing::train(
        c.layout, testing::model_args(4) + " --eval.every 2 --eval.windows " +
                      std::to_string(kWindows) + " --checkpoint.every 2 --checkpoint.keep 0" +
                      " --run.dir " + run.path() + c.extra);
    ASSERT_EQ(r.exit_code, 0) << c.name << "\n" << r.output;
    EXPECT_NE(r.output.find("valid bpc"), std::string::npos) << c.name << "\n" << r.output;
    const auto valid = testing::metric(run / "metrics.jsonl", "valid_loss");
    ASSERT_EQ(valid.size(), 2u) << c.name << ": steps 2 and 4 are scored, no others";
    for (int step : {2, 4}) {
      ASSERT_TRUE(valid.count(step)) << c.name << " step " << step;
      const double expected = eval_loss(checkpoint_at(run, step), kWindows);
      // The same windows and weights; tensor parallelism sums its partial products in another
      // order (float32 rounding, ~1e-7 relative per op over a few dozen ops).
      EXPECT_NEAR(valid.at(step), expected, 1e-5 * std::abs(expected))
          << c.name << " step " << step;
      EXPECT_NEAR(testing::metric(run / "metrics.jsonl", "valid_bpc").at(step),
                  valid.at(step) / std::log(2.0), 1e-6)
          << c.name;
    }
  }
}

TEST(Validation, ScoringChangesNoTrainingBit) {
  TempDir with, without;
  const Layout pp3{1, 3, 1};
  ASSERT_EQ(testing::train(pp3, testing::model_args(4) + " --eval.every 1 --run.dir " + with.path())
                .exit_code,
            0);
  ASSERT_EQ(testing::train(pp3, testing::model_args(4) + " --run.dir " + without.path()).exit_code,
            0);
  EXPECT_EQ(testing::losses(with / "metrics.jsonl"), testing::losses(without / "metrics.jsonl"));
  EXPECT_EQ(testing::metric(with / "metrics.jsonl", "valid_loss").size(), 4u);
  EXPECT_TRUE(testing::metric(without / "metrics.jsonl", "valid_loss").empty());
  testing::expect_same_checkpoints(checkpoint_at(with, 4), checkpoint_at(without, 4));
}

// Joint MatFormer: valid_loss at full width, valid_losses per granularity (g = 1 is the full
// width), each equal to `hourglass eval --ffn-widths F/g`.
TEST(Validation, JointMatformerScoresEveryGranularity) {
  TempDir run;
  const CommandResult r = testing::train(
      {1, 2, 1}, testing::model_args(2) +
                     " --model.ffn_granularities 1,4 --train.matformer joint --eval.every 2"
                     " --eval.windows 3 --run.dir " +
                     run.path());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string metrics = testing::read_file(run / "metrics.jsonl");
  const size_t at = metrics.find("\"valid_losses\": [");
  ASSERT_NE(at, std::string::npos) << metrics;
  size_t next = 0;
  const double full = std::stod(metrics.substr(at + 17), &next);
  const double quarter = std::stod(metrics.substr(at + 17 + next + 1));
  EXPECT_EQ(full, testing::metric(run / "metrics.jsonl", "valid_loss").at(2));
  EXPECT_NEAR(full, eval_loss(checkpoint_at(run, 2), 3), 1e-5 * full);
  EXPECT_NEAR(quarter, eval_loss(checkpoint_at(run, 2), 3, " --ffn-widths 16"), 1e-5 * quarter);
  EXPECT_NE(full, quarter);
}

// Bad eval keys: exit 2 before any step, naming the key.
TEST(Validation, BadEvalSettingsAreRefusedBeforeTraining) {
  const struct {
    std::string flags, message;
    std::map<std::string, std::string> overrides;
  } cases[] = {
      {" --eval.every -1", "eval.every = -1: must be at least 0", {}},
      {" --eval.windows 0", "eval.windows = 0: must be at least 1", {}},
      {" --eval.split dev", "eval.split = dev: must be valid, test or train", {}},
      {" --eval.every 1",
       "too few for one window of 20001; use another split or --eval.every 0",
       {{"train.seq_len", "20000"}}},
  };
  for (const auto& c : cases) {
    TempDir run;
    const CommandResult r = testing::train(
        {1, 1, 1}, testing::model_args(2, c.overrides) + c.flags + " --run.dir " + run.path());
    EXPECT_EQ(r.exit_code, 2) << c.flags << "\n" << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.flags << "\n" << r.output;
    EXPECT_EQ(r.output.find("| loss "), std::string::npos) << c.flags << "\n" << r.output;
  }
}

}  // namespace
}  // namespace hg
