// Evaluation windows of ARCHITECTURE.md §4.
#include <gtest/gtest.h>

#include "data/dataset.h"
#include "data/eval_windows.h"
#include "data_test_util.h"

namespace hg {
namespace {

using namespace hg::test;

TEST(EvalWindows, CountIsFloorOfNMinusOneOverL) {
  EXPECT_EQ(eval_window_count(10, 3), 3);  // [0,3] [3,6] [6,9]
  EXPECT_EQ(eval_window_count(11, 3), 3);  // token 10 fills no window
  EXPECT_EQ(eval_window_count(9, 3), 2);
  EXPECT_EQ(eval_window_count(4, 3), 1);
  EXPECT_EQ(eval_window_count(3, 3), 0);
  EXPECT_EQ(eval_window_count(1, 3), 0);
  EXPECT_EQ(eval_window_count(0, 3), 0);
  EXPECT_EQ(eval_window_count(5000001, 768), 6510);
  EXPECT_THROW(eval_window_count(10, 0), std::invalid_argument);
}

TEST(EvalWindows, WindowsAreTheSplitStreamAcrossShards) {
  TempDir tmp;
  auto bytes = random_bytes(2000, 31);
  write_file(tmp / "in", bytes);
  run_prep({"--input", tmp / "in", "--output", tmp / "ds", "--valid-bytes", "1000", "--test-bytes",
            "0", "--shard-bytes", "70"});
  TokenDataset valid(tmp / "ds", "valid");
  const int L = 16;
  const int64_t windows = eval_window_count(valid.num_tokens(), L);
  ASSERT_EQ(windows, 62);  // floor(999 / 16)
  std::vector<int32_t> all(static_cast<size_t>(windows * (L + 1)));
  read_eval_windows(valid, L, 0, windows, all.data());
  for (int64_t i = 0; i < windows; ++i) {
    std::vector<int32_t> one(L + 1);
    read_eval_window(valid, L, i, one.data());
    std::vector<int32_t> expected(bytes.begin() + 1000 + i * L,
                                  bytes.begin() + 1000 + i * L + L + 1);
    EXPECT_EQ(one, expected) << "window " << i;
    EXPECT_EQ(std::vector<int32_t>(all.begin() + i * (L + 1), all.begin() + (i + 1) * (L + 1)),
              expected);
  }
  std::vector<int32_t> out(L + 1);
  EXPECT_THROW(read_eval_window(valid, L, windows, out.data()), std::out_of_range);
}

}  // namespace
}  // namespace hg
