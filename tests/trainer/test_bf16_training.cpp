// train.precision bf16 end to end (ARCHITECTURE.md §9.1, issue 14): the quick start's 300 steps in
// bf16 end within 2% of the fp32 run's final valid bpc, and a bf16 run is its own bit-identical
// twin. Single process (the layout tests show every layout gives the same bits).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "core/gemm.h"
#include "tests/support/run_command.h"
#include "tests/support/training_runs.h"

namespace hg {
namespace {

// `hourglass train` of the quick start at `precision` in `dir`, then the valid bpc of its last
// checkpoint (full width), as the quick start's own `hourglass eval` prints it.
double quickstart_valid_bpc(const std::string& dir, const std::string& precision, int steps) {
  const std::string hg = testing::hourglass_binary();
  const auto trained = testing::run_command(
      testing::without_mpi_environment() + hg + " train --config " +
      testing::source_path("configs/quickstart.ini") + " --parallel.pp 1 --run.threads 1" +
      " --train.steps " + std::to_string(steps) + " --train.precision " + precision +
      " --data.dir " + testing::corpus_dir() + " --run.dir " + dir);
  EXPECT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_NE(trained.output.find("in " + precision), std::string::npos) << trained.output;
  const auto eval = testing::run_command(
      testing::without_mpi_environment() + "ls " + dir + "/checkpoints/step-*.h5 | tail -n 1 | " +
      "xargs -I{} " + hg + " eval --checkpoint {} --data " + testing::corpus_dir() +
      " --split valid");
  EXPECT_EQ(eval.exit_code, 0) << eval.output;
  const size_t at = eval.output.rfind("bpc ");
  if (at == std::string::npos) {
    ADD_FAILURE() << "no bpc in\n" << eval.output;
    return 0;
  }
  return std::stod(eval.output.substr(at + 4));
}

TEST(Bf16Training, QuickstartInBf16EndsWithinTwoPercentOfFp32ValidBpc) {
  std::string why;
  if (!bf16_matmul_supported(&why)) GTEST_SKIP() << why;
  testing::TempDir fp32_dir, bf16_dir;
  const double fp32 = quickstart_valid_bpc(fp32_dir.path(), "fp32", 300);
  const double bf16 = quickstart_valid_bpc(bf16_dir.path(), "bf16", 300);
  std::printf("quick start, 300 steps: valid bpc fp32 %.6f, bf16 %.6f (%+.2f%%)\n", fp32, bf16,
              100.0 * (bf16 - fp32) / fp32);
  EXPECT_LT(std::fabs(bf16 - fp32), 0.02 * fp32);
  EXPECT_NE(bf16, fp32) << "bf16 gave fp32's bits: were the operands rounded?";
}

TEST(Bf16Training, ARunInBf16IsBitIdenticalToItsTwin) {
  std::string why;
  if (!bf16_matmul_supported(&why)) GTEST_SKIP() << why;
  testing::TempDir a, b;
  const double first = quickstart_valid_bpc(a.path(), "bf16", 20);
  const double second = quickstart_valid_bpc(b.path(), "bf16", 20);
  EXPECT_EQ(first, second);
  EXPECT_EQ(testing::losses(a.path() + "/metrics.jsonl"), testing::losses(b.path() + "/metrics.jsonl"));
}

}  // namespace
}  // namespace hg
