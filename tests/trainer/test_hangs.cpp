// No wait is endless (parallel/comm.h): a rank that hangs (SIGSTOP) in the middle of a step or
// of a checkpoint save makes every other rank give up within `parallel.timeout`, naming the
// operation and the peer, and the job ends instead of waiting forever. Before the checkpoint
// token, broadcasts and gathers went through comm::, a rank stopped mid-save left rank 0 blocked
// in MPI_Probe for good.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "checkpoint/checkpoint_store.h"
#include "tests/support/training_runs.h"

namespace hg {
namespace {

using testing::read_file;
using testing::TempDir;
using Clock = std::chrono::steady_clock;

constexpr double kTimeout = 3;  // parallel.timeout of these runs, seconds

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The MPI rank of a process that mpirun started (its environment says).
int mpi_rank_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ");
  std::string entry;
  while (std::getline(in, entry, '\0'))
    if (entry.rfind("OMPI_COMM_WORLD_RANK=", 0) == 0) return std::stoi(entry.substr(21));
  return -1;
}

pid_t rank_pid(pid_t mpirun, int rank) {
  for (pid_t pid : testing::children_named(mpirun, "hourglass"))
    if (mpi_rank_of(pid) == rank) return pid;
  return -1;
}

// The job ended within the timeout plus teardown, not with success, and a rank's message says
// what it waited for and with whom.
void expect_timed_out(int code, double took, const std::string& log, const std::string& operation) {
  ASSERT_NE(code, -1000) << "the job was still running " << kTimeout + 30
                         << " s after a rank stopped\n"
                         << log;
  EXPECT_NE(code, 0) << log;
  EXPECT_LT(took, kTimeout + 30) << log;
  // "%g" of the seconds waited: "3.00012", or "3" when the wait ended within a microsecond of it.
  EXPECT_NE(log.find("rank 0: timed out after 3"), std::string::npos) << log;
  EXPECT_NE(log.find(" s waiting for " + operation), std::string::npos) << log;
  std::printf("job ended %.1f s after the rank stopped (exit %d): %s\n", took, code,
              log.substr(log.find("timed out after"), 120).c_str());
}

TEST(Hangs, ARankStoppedMidSaveEndsTheJobWithinTheTimeout) {
  TempDir run;
  // The default width (about 40 MB of checkpoint per stage, so that rank 0 is still writing its
  // own part when rank 1 stops) on short windows, one step, saved at the end.
  const std::string args = std::string(" --data.dir ") + testing::corpus_dir() +
                           " --train.seq_len 96 --train.batch 2 --train.micro_batch 1"
                           " --train.steps 1 --parallel.timeout 3 --run.dir " +
                           run.path();
  const pid_t mpirun = testing::spawn_shell(testing::train_command({1, 2, 1}, args) + " > " +
                                            (run / "log") + " 2>&1");
  const std::string dir = run / "checkpoints";
  const auto start = Clock::now();
  bool saving = false;
  while (!saving && seconds_since(start) < 120 && waitpid(mpirun, nullptr, WNOHANG) == 0) {
    std::error_code ignored;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ignored))
      saving |= entry.path().filename().string().find(".h5.tmp-") != std::string::npos;
    if (!saving) std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  ASSERT_TRUE(saving) << "no save began\n" << read_file(run / "log");
  const pid_t rank1 = rank_pid(mpirun, 1);
  ASSERT_GT(rank1, 0);
  ASSERT_EQ(kill(rank1, SIGSTOP), 0);
  const auto stopped = Clock::now();
  const int code = testing::wait_for_exit(mpirun, kTimeout + 30);
  const double took = seconds_since(stopped);
  expect_timed_out(code, took, read_file(run / "log"), "recv checkpoint token with peer 1");
  EXPECT_TRUE(list_checkpoints(dir).empty()) << "a save that never completed was committed";
}

TEST(Hangs, ARankStoppedMidStepEndsTheJobWithinTheTimeout) {
  TempDir run;
  const std::string args =
      testing::model_args(100000, {{"parallel.timeout", "3"}}) + " --run.dir " + run.path();
  const pid_t mpirun = testing::spawn_shell(testing::train_command({1, 2, 1}, args) + " > " +
                                            (run / "log") + " 2>&1");
  const auto start = Clock::now();
  while (testing::line_count(run / "metrics.jsonl") < 20 && seconds_since(start) < 120 &&
         waitpid(mpirun, nullptr, WNOHANG) == 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const pid_t rank1 = rank_pid(mpirun, 1);
  ASSERT_GT(rank1, 0) << read_file(run / "log");
  ASSERT_EQ(kill(rank1, SIGSTOP), 0);
  const auto stopped = Clock::now();
  const int code = testing::wait_for_exit(mpirun, kTimeout + 30);
  const double took = seconds_since(stopped);
  // Rank 0 waits in a pipeline message to or from stage 1, or in a collective of both ranks.
  const std::string log = read_file(run / "log");
  expect_timed_out(code, took, log, "");
  EXPECT_TRUE(log.find("with peer 1 ") != std::string::npos ||
              log.find("with peers 0,1 (collective)") != std::string::npos)
      << log;
}

}  // namespace
}  // namespace hg
