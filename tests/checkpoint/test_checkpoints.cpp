// Distributed checkpoints end to end (issue 6, docs/checkpoints.md): the file format's checksums
// and slice writes in-process; then the real binary under mpirun: a checkpoint saved on one
// layout resumes on others with the uninterrupted run's losses (bit-identical on the same
// layout), a rank killed with SIGKILL ends the job and the run resumes, non-finite training stops
// with exit 3 without saving, damaged files are rejected and `resume auto` falls back, and bad
// resume input exits 2.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "checkpoint/checkpoint_io.h"
#include "checkpoint/checkpoint_store.h"
#include "core/error.h"
#include "data/hdf5_util.h"
#include "tests/support/run_command.h"
#include "tests/support/training_runs.h"

namespace hg {
namespace {

using testing::children_named;
using testing::expect_same_checkpoints;
using testing::Layout;
using testing::line_count;
using testing::losses;
using testing::model_args;
using testing::run_command;
using testing::spawn_shell;
using testing::TempDir;
using testing::train;

// ---- the file format, in-process ----

class CheckpointFormat : public ::testing::Test {
 protected:
  TempDir dir_;
  std::string path(const std::string& name) const { return dir_ / name; }
};

CheckpointData small_checkpoint() {
  CheckpointData data;
  data.config = "[model]\nd_model = 4\n";
  data.step = 7;
  data.params["a/w"] = Tensor(Shape{3, 4});
  data.params["b"] = Tensor(Shape{5});
  for (auto& [name, t] : data.params)
    for (int64_t i = 0; i < t.numel(); ++i) t[i] = 0.25f * static_cast<float>(i) - 1.0f;
  return data;
}

// The (sum, elements) checksum attribute of a dataset, empty when absent.
std::vector<int64_t> checksum_attribute(const std::string& file, const std::string& dataset) {
  h5::QuietErrors quiet;
  h5::Handle f = h5::file(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  h5::Handle d = h5::dataset(H5Dopen2(f.get(), dataset.c_str(), H5P_DEFAULT));
  return h5::read_int64_list_attribute(d.get(), "checksum").value_or(std::vector<int64_t>{});
}

// Flips one bit in the middle of the stored bytes of `dataset` (contiguous).
void flip_data_byte(const std::string& file, const std::string& dataset) {
  haddr_t address = HADDR_UNDEF;
  hsize_t size = 0;
  {
    h5::QuietErrors quiet;
    h5::Handle f = h5::file(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    h5::Handle d = h5::dataset(H5Dopen2(f.get(), dataset.c_str(), H5P_DEFAULT));
    address = H5Dget_offset(d.get());
    size = H5Dget_storage_size(d.get());
    ASSERT_NE(address, HADDR_UNDEF) << dataset;
  }
  std::fstream io(file, std::ios::in | std::ios::out | std::ios::binary);
  io.seekg(static_cast<std::streamoff>(address + size / 2));
  char byte = 0;
  io.read(&byte, 1);
  byte ^= 0x10;
  io.seekp(static_cast<std::streamoff>(address + size / 2));
  io.write(&byte, 1);
}

TEST_F(CheckpointFormat, EveryTensorCarriesAChecksumAndVerifies) {
  write_checkpoint(path("a.h5"), small_checkpoint());
  for (const char* d : {"/params/a/w", "/params/b", "/optim/exp_avg/a/w", "/optim/exp_avg_sq/b"}) {
    const std::vector<int64_t> sum = checksum_attribute(path("a.h5"), d);
    ASSERT_EQ(sum.size(), 2u) << d;
    EXPECT_EQ(sum[1], std::string(d).find("a/w") != std::string::npos ? 12 : 5) << d;
  }
  const CheckpointCheck check = verify_checkpoint(path("a.h5"));
  EXPECT_TRUE(check.valid) << check.problem;
  EXPECT_EQ(check.tensors, 6);
  EXPECT_EQ(check.checksummed, 6);
  EXPECT_TRUE(check.config_checksum);
  EXPECT_EQ(check.step, 7);
  EXPECT_EQ(check.params.at("a/w"), (Shape{3, 4}));
  EXPECT_EQ(check.bytes, 3 * (12 + 5) * 4);
}

TEST_F(CheckpointFormat, FixturesWithoutChecksumsStillReadAndVerify) {
  const std::string fixture = std::string(HG_SOURCE_DIR) + "/tests/data/reference-base/init.h5";
  const CheckpointCheck check = verify_checkpoint(fixture);
  EXPECT_TRUE(check.valid) << check.problem;
  EXPECT_GT(check.tensors, 0);
  EXPECT_EQ(check.checksummed, 0);
  EXPECT_FALSE(check.config_checksum);
}

TEST_F(CheckpointFormat, AFlippedDataByteFailsItsChecksum) {
  write_checkpoint(path("a.h5"), small_checkpoint());
  flip_data_byte(path("a.h5"), "/params/a/w");
  const CheckpointCheck check = verify_checkpoint(path("a.h5"));
  EXPECT_FALSE(check.valid);
  EXPECT_NE(check.problem.find("/params/a/w fails its checksum"), std::string::npos)
      << check.problem;
  EXPECT_NE(check.problem.find(path("a.h5")), std::string::npos) << check.problem;
  EXPECT_THROW(read_checkpoint(path("a.h5")), UsageError);
  // Only the damaged tensor is unreadable: a reader of other tensors is not affected.
  EXPECT_NO_THROW(read_checkpoint_tensors(path("a.h5"), {"b"}, true));
}

TEST_F(CheckpointFormat, ADamagedConfigFailsItsChecksum) {
  write_checkpoint(path("a.h5"), small_checkpoint());
  {
    h5::QuietErrors quiet;
    h5::Handle f = h5::file(H5Fopen(path("a.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
    h5::write_string_attribute(f.get(), "config", "[model]\nd_model = 5\n");
  }
  const CheckpointCheck check = verify_checkpoint(path("a.h5"));
  EXPECT_FALSE(check.valid);
  EXPECT_NE(check.problem.find("does not match its checksum"), std::string::npos) << check.problem;
}

TEST_F(CheckpointFormat, NonFiniteValuesMakeACheckpointInvalid) {
  CheckpointData data = small_checkpoint();
  data.params.at("b")[2] = std::nanf("");
  write_checkpoint(path("nan.h5"), data);  // the format stores anything; the trainer never does
  const CheckpointCheck check = verify_checkpoint(path("nan.h5"));
  EXPECT_FALSE(check.valid);
  EXPECT_NE(check.problem.find("/params/b holds a non-finite value"), std::string::npos)
      << check.problem;
}

// Tensor-parallel style: the column halves of a tensor written by two writers in turn, each
// opening the file, writing its hyperslab and closing it.
TEST_F(CheckpointFormat, HyperslabsFromWritersInTurnAssembleOneTensor) {
  const std::string file = path("slices.h5");
  create_checkpoint_file(file, "[model]\n", 3);
  Tensor full(Shape{4, 6});
  for (int64_t i = 0; i < full.numel(); ++i) full[i] = static_cast<float>(i);
  for (int t = 0; t < 2; ++t) {
    CheckpointAppender writer(file);
    if (t == 0) writer.create("w", full.shape());
    std::vector<float> half;
    for (int r = 0; r < 4; ++r)
      for (int c = 3 * t; c < 3 * t + 3; ++c) half.push_back(full[r * 6 + c]);
    const Hyperslab block{{0, 3 * t}, {4, 3}};
    for (const char* group : {"/params/w", "/optim/exp_avg/w", "/optim/exp_avg_sq/w"})
      writer.write(group, block, half.data());
    writer.close();
  }
  const CheckpointData back = read_checkpoint(file);  // verifies the summed checksum
  EXPECT_EQ(back.step, 3);
  // The slices' checksum terms add up to what one writer of the whole tensor stores.
  CheckpointData whole_data;
  whole_data.params["w"] = full;
  whole_data.exp_avg["w"] = full;
  whole_data.exp_avg_sq["w"] = full;
  write_checkpoint(path("whole.h5"), whole_data);
  EXPECT_EQ(checksum_attribute(file, "/params/w"),
            checksum_attribute(path("whole.h5"), "/params/w"));
  ASSERT_EQ(back.params.at("w").shape(), full.shape());
  EXPECT_EQ(0, std::memcmp(back.params.at("w").data(), full.data(), sizeof(float) * full.numel()));
  EXPECT_EQ(0,
            std::memcmp(back.exp_avg_sq.at("w").data(), full.data(), sizeof(float) * full.numel()));
  EXPECT_TRUE(verify_checkpoint(file).valid);
}

TEST_F(CheckpointFormat, ATensorWithAMissingSliceIsIncomplete) {
  const std::string file = path("partial.h5");
  create_checkpoint_file(file, "[model]\n", 3);
  CheckpointAppender writer(file);
  writer.create("w", Shape{2, 4});
  const float half[4] = {1, 2, 3, 4};
  for (const char* group : {"/params/w", "/optim/exp_avg/w", "/optim/exp_avg_sq/w"})
    writer.write(group, Hyperslab{{0, 0}, {2, 2}}, half);  // the columns 2..3 never come
  writer.close();
  const CheckpointCheck check = verify_checkpoint(file);
  EXPECT_FALSE(check.valid);
  EXPECT_NE(check.problem.find("/params/w is incomplete: 4 of its 8 elements"), std::string::npos)
      << check.problem;
}

TEST_F(CheckpointFormat, ResumeAutoPicksTheNewestValidCheckpoint) {
  CheckpointData data = small_checkpoint();
  for (int64_t step : {5, 10, 15}) {
    data.step = step;
    write_checkpoint(path(checkpoint_file_name(step)), data);
  }
  std::ofstream(path("step-00000020.h5.tmp-12345")) << "a save that never finished";
  EXPECT_EQ(newest_valid_checkpoint(dir_.path()), path("step-00000015.h5"));
  flip_data_byte(path("step-00000015.h5"), "/optim/exp_avg/a/w");
  std::filesystem::resize_file(path("step-00000010.h5"), 1000);
  EXPECT_EQ(newest_valid_checkpoint(dir_.path()), path("step-00000005.h5"));
  prune_checkpoints(dir_.path(), 2);
  EXPECT_FALSE(std::filesystem::exists(path("step-00000020.h5.tmp-12345")));
  EXPECT_FALSE(std::filesystem::exists(path("step-00000005.h5")));
  EXPECT_EQ(newest_valid_checkpoint(dir_.path()), "");
}

// ---- the real binary ----

// Saves at step 6 of 10 on `saved`, resumes on each of `others`: steps 7..10 within 1e-5
// relative of the uninterrupted run; on `saved` itself bit-identical, final checkpoint included.
void expect_resumes_on_layouts(const Layout& saved, const std::vector<Layout>& others,
                               const std::string& args) {
  TempDir base;
  const auto full = train(saved, args + " --checkpoint.every 6 --run.dir " + base.path());
  ASSERT_EQ(full.exit_code, 0) << full.output;
  const auto expected = losses(base / "metrics.jsonl");
  ASSERT_EQ(expected.size(), 10u);
  const std::string step6 = base / "checkpoints/step-00000006.h5";
  for (const Layout& layout : others) {
    TempDir run;
    const auto r =
        train(layout, args + " --checkpoint.resume " + step6 + " --run.dir " + run.path());
    ASSERT_EQ(r.exit_code, 0) << layout.name() << "\n" << r.output;
    EXPECT_NE(r.output.find("resumed from " + step6 + " at step 6"), std::string::npos) << r.output;
    const auto resumed = losses(run / "metrics.jsonl");
    ASSERT_EQ(resumed.size(), 4u) << layout.name();
    for (const auto& [step, loss] : resumed)
      EXPECT_NEAR(loss, expected.at(step), 1e-5 * std::abs(expected.at(step)))
          << "step " << step << " resumed on " << layout.name() << " from " << saved.name();
  }
  TempDir same;
  const auto r = train(saved, args + " --checkpoint.resume " + step6 + " --run.dir " + same.path());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const auto& [step, loss] : losses(same / "metrics.jsonl"))
    EXPECT_EQ(loss, expected.at(step)) << "step " << step << " resumed on the same layout";
  expect_same_checkpoints(base / "checkpoints/step-00000010.h5",
                          same / "checkpoints/step-00000010.h5");
}

TEST(CheckpointLayouts, SavedOnDp2Pp2ResumesOnOtherLayouts) {
  expect_resumes_on_layouts({2, 2, 1}, {{1, 1, 1}, {1, 3, 1}, {2, 1, 1}}, model_args(10));
}

TEST(CheckpointLayouts, SavedOnDp2Pp2Tp2ResumesOnOtherLayouts) {
  TempDir probe;
  const auto r = train({1, 1, 2}, model_args(0) + " --run.dir " + probe.path());
  if (r.exit_code == 2 &&
      r.output.find("tensor parallelism is not implemented") != std::string::npos)
    GTEST_SKIP() << "this build has no tensor parallelism yet (parallel.tp must be 1)";
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_resumes_on_layouts({2, 2, 2}, {{1, 1, 1}, {1, 3, 1}, {2, 1, 2}}, model_args(10));
}

// ZeRO-1 (parallel.zero 1) keeps checkpoints canonical: moments saved from the shards resume
// without ZeRO, and the reverse, under the zbh1 schedule and with tensor parallelism, each
// continuing within 1e-5 of the run it resumes; a ZeRO-1 checkpoint resumed under ZeRO-1 on its own
// layout repeats the same bits, final file included.
TEST(CheckpointLayouts, ZeroOneAndZeroZeroResumeEachOther) {
  const Layout dp2{2, 1, 1};
  const std::string args = model_args(10) + " --checkpoint.every 6", zero1 = " --parallel.zero 1";
  TempDir plain, sharded;
  const auto a = train(dp2, args + " --run.dir " + plain.path());
  ASSERT_EQ(a.exit_code, 0) << a.output;
  const auto b = train(dp2, args + zero1 + " --run.dir " + sharded.path());
  ASSERT_EQ(b.exit_code, 0) << b.output;
  const auto plain_losses = losses(plain / "metrics.jsonl"),
             sharded_losses = losses(sharded / "metrics.jsonl");
  ASSERT_EQ(sharded_losses.size(), 10u);
  for (const auto& [step, loss] : sharded_losses)  // §6: ZeRO-1 changes no loss
    EXPECT_NEAR(loss, plain_losses.at(step), 1e-5 * std::abs(plain_losses.at(step)))
        << "step " << step;
  struct Resume {
    const TempDir& from;
    std::string extra;
    Layout layout;
    const std::map<int64_t, double>& expected;
  };
  // ... and under another schedule: zbh1 on dp 2 x pp 2, with and without ZeRO-1.
  const std::string zbh1 = " --parallel.schedule zbh1";
  for (const Resume& r :
       {Resume{plain, zero1, dp2, plain_losses}, Resume{sharded, "", dp2, sharded_losses},
        Resume{sharded, "", Layout{1, 1, 1}, sharded_losses},
        Resume{sharded, zero1 + zbh1, Layout{2, 2, 1}, sharded_losses},
        // With tp 2 a replica's shard of a one-element slice is all or nothing of it; the save at
        // the end must still write each value once (it once wrote it twice and failed).
        Resume{sharded, zero1, Layout{2, 1, 2}, sharded_losses},
        Resume{plain, zbh1, Layout{1, 2, 1}, plain_losses}}) {
    TempDir run;
    const std::string step6 = r.from / "checkpoints/step-00000006.h5";
    const auto c = train(r.layout, model_args(10) + r.extra + " --checkpoint.resume " + step6 +
                                       " --run.dir " + run.path());
    ASSERT_EQ(c.exit_code, 0) << c.output;
    const auto resumed = losses(run / "metrics.jsonl");
    ASSERT_EQ(resumed.size(), 4u) << step6 << r.extra;
    for (const auto& [step, loss] : resumed)
      EXPECT_NEAR(loss, r.expected.at(step), 1e-5 * std::abs(r.expected.at(step)))
          << "step " << step << " of " << step6 << " resumed on " << r.layout.name() << r.extra;
  }
  TempDir same;
  const auto d =
      train(dp2, args + zero1 + " --checkpoint.resume " +
                     (sharded / "checkpoints/step-00000006.h5") + " --run.dir " + same.path());
  ASSERT_EQ(d.exit_code, 0) << d.output;
  for (const auto& [step, loss] : losses(same / "metrics.jsonl"))
    EXPECT_EQ(loss, sharded_losses.at(step)) << "step " << step << " resumed under ZeRO-1";
  expect_same_checkpoints(sharded / "checkpoints/step-00000010.h5",
                          same / "checkpoints/step-00000010.h5");
}

// ---- failures ----

TEST(CheckpointFailures, AKilledRankEndsTheJobAndTheRunResumesToTheSameLosses) {
  const Layout layout{1, 2, 1};
  const int steps = 200;
  TempDir run, reference;
  const std::string args = model_args(steps) + " --checkpoint.every 5 --checkpoint.keep 2";
  const pid_t mpirun = spawn_shell(testing::train_command(layout, args) + " --run.dir " +
                                   run.path() + " > " + (run / "log") + " 2>&1");
  ASSERT_GT(mpirun, 0);
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  // Kill once the checkpoint of step 10 is complete (renamed into place: saves run in the
  // background, so on a loaded machine it can land a few steps after step 10's metrics).
  auto newest_saved_step = [&] {
    const auto files = list_checkpoints(run / "checkpoints");
    return files.empty() ? -1L : std::stol(files.front().substr(files.front().rfind("step-") + 5));
  };
  while ((line_count(run / "metrics.jsonl") < 12 || newest_saved_step() < 10) && seconds() < 120)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::vector<pid_t> ranks = children_named(mpirun, "hourglass");
  ASSERT_EQ(ranks.size(), 2u) << "ranks of mpirun " << mpirun << " not found";
  const size_t steps_before = line_count(run / "metrics.jsonl");
  ASSERT_LT(steps_before, static_cast<size_t>(steps)) << "the run finished before the kill";
  ASSERT_EQ(kill(ranks.back(), SIGKILL), 0);
  const auto killed = std::chrono::steady_clock::now();
  int status = 0;
  pid_t done = 0;
  while ((done = waitpid(mpirun, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() - killed < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const double to_exit =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  if (done == 0) {  // hung: clean up what this test started, then fail
    for (pid_t rank : children_named(mpirun, "hourglass")) kill(rank, SIGKILL);
    kill(mpirun, SIGKILL);
    waitpid(mpirun, &status, 0);
    FAIL() << "the job did not end within 60 s of a rank's SIGKILL";
  }
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "exit status after SIGKILL";
  std::printf("job ended %.2f s after SIGKILL of rank pid %d (exit status %d)\n", to_exit,
              ranks.back(), WIFEXITED(status) ? WEXITSTATUS(status) : -1);

  // The newest complete checkpoint is intact (a save cut short leaves only a temporary file).
  const auto files = list_checkpoints(run / "checkpoints");
  ASSERT_FALSE(files.empty());
  for (const std::string& file : files) {
    const CheckpointCheck check = verify_checkpoint(file);
    EXPECT_TRUE(check.valid) << file << ": " << check.problem;
  }
  EXPECT_GE(read_checkpoint_header(files.front()).step, 10);

  // Resuming in the same directory reaches the uninterrupted run's losses, bit for bit.
  const auto resumed = train(layout, args + " --checkpoint.resume auto --run.dir " + run.path());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from " + files.front()), std::string::npos)
      << resumed.output;
  const auto full = train(layout, args + " --run.dir " + reference.path());
  ASSERT_EQ(full.exit_code, 0) << full.output;
  EXPECT_EQ(losses(run / "metrics.jsonl"), losses(reference / "metrics.jsonl"));
  expect_same_checkpoints(run / "checkpoints/step-00000200.h5",
                          reference / "checkpoints/step-00000200.h5");
}

TEST(CheckpointFailures, NonFiniteTrainingExitsThreeNamingTheParameterWithoutSaving) {
  TempDir run;
  const auto r = train({1, 2, 1}, model_args(10, {{"train.lr", "1e6"}, {"train.warmup", "0"}}) +
                                      " --checkpoint.every 1 --run.dir " + run.path());
  EXPECT_EQ(r.exit_code, 3) << r.output;
  const size_t at = r.output.find("non-finite");
  ASSERT_NE(at, std::string::npos) << r.output;
  const std::string message = r.output.substr(at, r.output.find('\n', at) - at);
  EXPECT_NE(message.find("first non-finite parameter: stage "), std::string::npos) << message;
  EXPECT_NE(message.find(" gradient "), std::string::npos) << message;
  EXPECT_NE(message.find("Stopping without saving"), std::string::npos) << message;
  const auto metrics = losses(run / "metrics.jsonl");
  ASSERT_FALSE(metrics.empty());
  const int64_t failed_step = metrics.rbegin()->first + 1;  // its metrics line is never written
  const auto files = list_checkpoints(run / "checkpoints");
  ASSERT_FALSE(files.empty()) << "the steps before the failure were finite and saved";
  EXPECT_NE(message.find("the last good checkpoint is " + files.front()), std::string::npos)
      << message;
  for (const std::string& file : files) {
    const CheckpointCheck check = verify_checkpoint(file);
    EXPECT_TRUE(check.valid) << file << ": " << check.problem;  // every value finite
    EXPECT_LT(check.step, failed_step) << file;
  }
}

// ---- damaged files and bad input ----

TEST(CheckpointDamage, TruncatedOrFlippedIsRejectedAndResumeAutoFallsBack) {
  const Layout layout{1, 2, 1};
  TempDir run;
  const std::string args = model_args(12) + " --checkpoint.every 4 --run.dir " + run.path();
  ASSERT_EQ(train(layout, args).exit_code, 0);
  const std::string dir = run / "checkpoints";
  const std::string step8 = dir + "/step-00000008.h5", step12 = dir + "/step-00000012.h5";
  flip_data_byte(step12, "/params/stacks/0/blocks/0/ffn/w1");
  std::filesystem::resize_file(step8, std::filesystem::file_size(step8) / 2);

  const std::string hg = testing::hourglass_binary();
  const auto flipped = run_command(hg + " info " + step12);
  EXPECT_EQ(flipped.exit_code, 2) << flipped.output;
  EXPECT_NE(flipped.output.find("validity: DAMAGED"), std::string::npos) << flipped.output;
  EXPECT_NE(flipped.output.find("/params/stacks/0/blocks/0/ffn/w1 fails its checksum"),
            std::string::npos)
      << flipped.output;
  const auto truncated = run_command(hg + " info " + step8);
  EXPECT_EQ(truncated.exit_code, 2) << truncated.output;
  EXPECT_NE(truncated.output.find("truncated or damaged"), std::string::npos) << truncated.output;
  const auto good = run_command(hg + " info " + dir + "/step-00000004.h5");
  EXPECT_EQ(good.exit_code, 0) << good.output;
  EXPECT_NE(good.output.find("every checksum matches"), std::string::npos) << good.output;

  const auto explicit_resume = train(layout, args + " --checkpoint.resume " + step12);
  EXPECT_EQ(explicit_resume.exit_code, 2) << explicit_resume.output;
  EXPECT_NE(explicit_resume.output.find("fails its checksum"), std::string::npos)
      << explicit_resume.output;

  // resume auto: both damaged files are skipped with a warning; step 4 is resumed, and the run
  // ends with the same weights as the undamaged run had.
  const auto resumed = train(layout, args + " --checkpoint.resume auto");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("skipping damaged checkpoint: checkpoint '" + step12 + "'"),
            std::string::npos)
      << resumed.output;
  EXPECT_NE(resumed.output.find("skipping damaged checkpoint: checkpoint '" + step8 + "'"),
            std::string::npos)
      << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from " + dir + "/step-00000004.h5 at step 4"),
            std::string::npos)
      << resumed.output;
  EXPECT_TRUE(verify_checkpoint(step12).valid) << "rewritten by the resumed run";
  TempDir again;
  ASSERT_EQ(train(layout, model_args(12) + " --run.dir " + again.path()).exit_code, 0);
  expect_same_checkpoints(step12, again / "checkpoints/step-00000012.h5");
}

TEST(CheckpointBadInput, AnotherModelsCheckpointIsRejectedWithTheMismatchList) {
  TempDir run, other;
  ASSERT_EQ(train({1, 1, 1}, model_args(0) + " --run.dir " + run.path()).exit_code, 0);
  const std::string ckpt = run / "checkpoints/step-00000000.h5";
  // Wider model, one block more in the middle stack; on two stages, so both stages' tensors
  // must appear in the one list.
  const auto r = train(
      {1, 2, 1}, model_args(4, {{"model.d_model", "48"}, {"model.hierarchy", "'1@1 2@2 1@1'"}}) +
                     " --checkpoint.resume " + ckpt + " --run.dir " + other.path());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(ckpt + " does not match the model configuration"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("embed/weight: checkpoint [256, 32], model [256, 48]"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("head/weight: checkpoint [32, 256], model [48, 256]"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("missing stacks/1/blocks/1/attn/wq [48, 48]"), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("step "), std::string::npos) << "trained before failing";
  // Under tensor parallelism the list names the canonical shapes, not the slices.
  const auto tp =
      train({1, 1, 2}, model_args(4, {{"model.d_model", "48"}}) + " --checkpoint.resume " + ckpt +
                           " --run.dir " + other.path());
  EXPECT_EQ(tp.exit_code, 2) << tp.output;
  EXPECT_NE(tp.output.find("stacks/0/blocks/0/attn/wq: checkpoint [32, 32], model [48, 48]"),
            std::string::npos)
      << tp.output;
  // Fewer blocks than the checkpoint: its extra tensors are listed as unexpected.
  const auto fewer =
      train({1, 1, 1}, model_args(4, {{"model.hierarchy", "'1@1 0@2 1@1'"}}) +
                           " --checkpoint.init_from " + ckpt + " --run.dir " + other.path());
  EXPECT_EQ(fewer.exit_code, 2) << fewer.output;
  EXPECT_NE(fewer.output.find("unexpected stacks/1/blocks/0/ffn/w1 [32, 64]"), std::string::npos)
      << fewer.output;
}

TEST(CheckpointBadInput, ResumeAutoWithoutCheckpointsStartsFreshAndAMissingFileExitsTwo) {
  TempDir run;
  const auto fresh =
      train({1, 1, 1}, model_args(2) + " --checkpoint.resume auto --run.dir " + run.path());
  ASSERT_EQ(fresh.exit_code, 0) << fresh.output;
  EXPECT_NE(fresh.output.find("resume auto: no complete checkpoint in " + (run / "checkpoints") +
                              ", starting fresh"),
            std::string::npos)
      << fresh.output;
  EXPECT_EQ(losses(run / "metrics.jsonl").size(), 2u);

  const auto missing = train({1, 2, 1}, model_args(2) + " --checkpoint.resume " +
                                            (run / "no-such.h5") + " --run.dir " + run.path());
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find("checkpoint.resume = " + (run / "no-such.h5") + ": no such file"),
            std::string::npos)
      << missing.output;
  EXPECT_EQ(missing.output.find("step "), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace hg
