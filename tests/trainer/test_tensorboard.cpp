// log.tensorboard (ARCHITECTURE.md §9.5, issue 18): the event files a training run writes are read
// back by TensorBoard's own reader (EventAccumulator, in the venv scripts/setup.sh makes) and
// hold every step's metrics-line numbers, as float32.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>

#include "tests/support/training_runs.h"
#include "trainer/tensorboard_log.h"

namespace hg {
namespace {

using testing::CommandResult;
using testing::TempDir;

// The venv's python that has tensorboard (scripts/setup.sh): HG_VENV, else ~/.cache/hourglass.
std::string tensorboard_python() {
  const char* venv = std::getenv("HG_VENV");
  const char* home = std::getenv("HOME");
  return (venv ? std::string(venv) : std::string(home ? home : "") + "/.cache/hourglass/venv") +
         "/bin/python";
}

// tag -> step -> value, as TensorBoard reads the directory.
std::map<std::string, std::map<int64_t, double>> read_with_tensorboard(const std::string& dir) {
  const CommandResult r =
      testing::run_command(tensorboard_python() + " " +
                           testing::source_path("tests/trainer/read_tensorboard.py") + " " + dir);
  EXPECT_EQ(r.exit_code, 0) << "TensorBoard's reader failed (scripts/setup.sh installs it):\n"
                            << r.output;
  std::map<std::string, std::map<int64_t, double>> scalars;
  std::istringstream lines(r.output);
  std::string tag;
  int64_t step = 0;
  double value = 0;
  while (lines >> tag >> step >> value) scalars[tag][step] = value;
  return scalars;
}

TEST(TensorBoard, TheReaderSeesEveryStepsMetricsAndValidation) {
  TempDir run;
  const std::string dir = run / "tb";
  const CommandResult r = testing::train(
      {1, 2, 1}, testing::model_args(4) + " --eval.every 2 --eval.windows 3 --log.tensorboard " +
                     dir + " --run.dir " + run.path());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("tensorboard " + dir + "/events.out.tfevents."), std::string::npos)
      << r.output;
  const auto scalars = read_with_tensorboard(dir);
  const std::string metrics = run / "metrics.jsonl";
  const std::map<std::string, std::string> field_of_tag = {
      {"train/loss", "loss"},           {"train/bpc", "bpc"},          {"train/lr", "lr"},
      {"train/grad_norm", "grad_norm"}, {"pipeline/bubble", "bubble"}, {"valid/loss", "valid_loss"},
      {"valid/bpc", "valid_bpc"}};
  for (const auto& [tag, field] : field_of_tag) {
    ASSERT_TRUE(scalars.count(tag)) << tag;
    const auto expected = testing::metric(metrics, field);
    ASSERT_EQ(scalars.at(tag).size(), expected.size()) << tag;
    ASSERT_EQ(expected.size(), field.starts_with("valid") ? 2u : 4u) << tag;
    // Stored as float32 (TensorBoard's simple_value); the metrics line has 9 digits, 4 decimals
    // for the bubble.
    const double slack = tag == "pipeline/bubble" ? 5e-5 : 1e-6;
    for (const auto& [step, value] : expected)
      EXPECT_NEAR(scalars.at(tag).at(step), value, slack * (std::abs(value) + 1))
          << tag << " step " << step;
  }
  ASSERT_TRUE(scalars.count("train/tokens_per_second"));
  EXPECT_GT(scalars.at("train/tokens_per_second").at(4), 0);
}

TEST(TensorBoard, AnUnwritableDirectoryIsRefusedBeforeTraining) {
  TempDir run;
  const std::string file = run / "a-file";
  std::FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  const CommandResult r = testing::train({1, 1, 1}, testing::model_args(2) + " --log.tensorboard " +
                                                        file + " --run.dir " + run.path());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("log.tensorboard = " + file + " is a file, not a directory"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("| loss "), std::string::npos) << r.output;
}

// TFRecord's masked CRC-32C on the check values of RFC 3720 (iSCSI, B.4) and crc32c's own tests:
// 32 zero bytes have CRC-32C 0x8a9136aa; "123456789" 0xe3069283.
TEST(TensorBoard, RecordChecksumIsMaskedCrc32c) {
  auto mask = [](uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; };
  const std::string zeros(32, '\0'), digits = "123456789";
  EXPECT_EQ(masked_crc32c(zeros.data(), zeros.size()), mask(0x8a9136aau));
  EXPECT_EQ(masked_crc32c(digits.data(), digits.size()), mask(0xe3069283u));
}

}  // namespace
}  // namespace hg
