// Where a training run writes, checked before any compute (issue 12, trainer/run_outputs.h):
// output paths that cannot be written, and checkpoint directories that hold another run's (or a
// later) checkpoints, exit 2 with one message naming the key; nothing is trained or deleted.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "checkpoint/checkpoint_io.h"
#include "checkpoint/checkpoint_store.h"
#include "tests/support/training_runs.h"

namespace hg {
namespace {

using testing::CommandResult;
using testing::TempDir;

// A single-process `hourglass train` of the tiny model for `steps` steps.
CommandResult train_tiny(int steps, const std::string& args,
                         const std::map<std::string, std::string>& overrides = {}) {
  return testing::run_command(testing::without_mpi_environment() + testing::hourglass_binary() +
                              " train" + testing::model_args(steps, overrides) + args);
}

// Exit 2, `message` in the output, and no step trained.
void expect_refused(const CommandResult& r, const std::string& message) {
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(message), std::string::npos) << "expected: " << message << "\n"
                                                       << r.output;
  EXPECT_EQ(r.output.find("| loss "), std::string::npos) << "trained before refusing\n" << r.output;
}

// ---- checkpoint directories ----

TEST(CheckpointDirOwner, AnotherRunsCheckpointsAreNeitherPrunedNorResumed) {
  TempDir run;
  ASSERT_EQ(train_tiny(2, " --run.dir " + run.path()).exit_code, 0);
  const auto before = list_checkpoints(run / "checkpoints");
  ASSERT_EQ(before.size(), 1u);
  // Before the check, a seed-2 run here saved step 1 and `keep 1` pruned it (step 1 < step 2),
  // exit 0; `resume auto` then picked up the seed-1 run's checkpoint.
  for (const char* resume : {"none", "auto"}) {
    const auto r = train_tiny(1, std::string(" --train.seed 2 --checkpoint.keep 1 --run.dir ") +
                                     run.path() + " --checkpoint.resume " + resume);
    expect_refused(r, "checkpoint.dir = " + (run / "checkpoints") + " holds " + before.front() +
                          " of another run (train.seed = 1 there, train.seed = 2 here)");
    EXPECT_NE(r.output.find("give this run its own --checkpoint.dir"), std::string::npos);
  }
  const auto wider = train_tiny(1, " --run.dir " + run.path(), {{"model.d_model", "48"}});
  expect_refused(wider, "of another run (model.d_model = 32 there, model.d_model = 48 here)");
  EXPECT_EQ(list_checkpoints(run / "checkpoints"), before);
}

TEST(CheckpointDirOwner, AFreshRunInAUsedDirectoryIsRefusedAndResumeAutoContinues) {
  TempDir run;
  ASSERT_EQ(train_tiny(2, " --run.dir " + run.path()).exit_code, 0);
  expect_refused(train_tiny(4, " --run.dir " + run.path()),
                 "already holds this configuration's " + (run / "checkpoints/step-00000002.h5"));
  const auto resumed = train_tiny(4, " --checkpoint.resume auto --run.dir " + run.path());
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from"), std::string::npos) << resumed.output;
}

TEST(CheckpointDirOwner, ResumingAnOlderFileBesideLaterOnesIsRefused) {
  TempDir run;
  ASSERT_EQ(train_tiny(4, " --checkpoint.every 2 --run.dir " + run.path()).exit_code, 0);
  const std::string step2 = run / "checkpoints/step-00000002.h5";
  expect_refused(train_tiny(6, " --checkpoint.resume " + step2 + " --run.dir " + run.path()),
                 "holds " + (run / "checkpoints/step-00000004.h5") +
                     ", later than the step 2 this run resumes from (" + step2 + ")");
  // From another directory it is a new branch of the run, and allowed.
  TempDir branch;
  const auto r = train_tiny(6, " --checkpoint.resume " + step2 + " --run.dir " + branch.path());
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(CheckpointDirOwner, PruningNeverDeletesTheFileJustWritten) {
  TempDir dir;
  CheckpointData data;
  data.config = "[model]\nd_model = 4\n";
  data.params["w"] = Tensor(Shape{2});
  for (int64_t step : {5, 10, 15}) {
    data.step = step;
    write_checkpoint(dir / checkpoint_file_name(step), data);
  }
  prune_checkpoints(dir.path(), 2, dir / checkpoint_file_name(5));
  EXPECT_EQ(list_checkpoints(dir.path()),
            (std::vector<std::string>{dir / "step-00000015.h5", dir / "step-00000005.h5"}));
  prune_checkpoints(dir.path(), 1, dir / checkpoint_file_name(5));
  EXPECT_EQ(list_checkpoints(dir.path()), std::vector<std::string>{dir / "step-00000005.h5"});
}

// ---- output paths ----

TEST(OutputPaths, UnwritablePathsAreRefusedBeforeTraining) {
  TempDir run;
  const std::string file = run / "a-file";
  std::ofstream(file) << "not a directory";
  // Before: found at the first save, after training (exit 3).
  expect_refused(train_tiny(2, " --run.dir " + (run / "r1") + " --checkpoint.dir " + file),
                 "checkpoint.dir = " + file + " is a file, not a directory");
  expect_refused(train_tiny(2, " --run.dir " + file + "/sub"),
                 "checkpoint.dir (run.dir/checkpoints) = " + file +
                     "/sub/checkpoints: cannot "
                     "create it");
  expect_refused(train_tiny(2, " --run.dir " + (run / "r2") + " --checkpoint.dir " + (run / "c2") +
                                   " --log.metrics " + file + "/metrics.jsonl"),
                 "log.metrics (its directory) = " + file + " is a file, not a directory");
  expect_refused(train_tiny(2, " --run.dir " + (run / "r3") + " --log.metrics " + run.path()),
                 "log.metrics = " + run.path() + " is a directory; give a file path");
  expect_refused(train_tiny(2, " --run.dir " + (run / "r4") + " --log.trace " + file + "/t.json"),
                 "log.trace (its directory) = " + file);
  EXPECT_FALSE(std::filesystem::exists(run / "r1/metrics.jsonl"));
}

TEST(OutputPaths, AConfigThatIsADirectoryOrMissingIsRefused) {
  TempDir run;
  // Before: a directory was read as an empty file and the run went on with the defaults.
  expect_refused(train_tiny(2, " --config " + run.path() + " --run.dir " + (run / "r")),
                 "--config " + run.path() + " is a directory; give an INI file");
  expect_refused(train_tiny(2, " --config " + (run / "none.ini") + " --run.dir " + (run / "r")),
                 "--config " + (run / "none.ini") +
                     ": cannot read it (No such file or "
                     "directory)");
}

}  // namespace
}  // namespace hg
