// The sampler of ARCHITECTURE.md §3: stateless offsets, and a global batch that is the same for
// every data-parallel layout and micro-batch split.
#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <set>

#include "core/error.h"
#include "data/dataset.h"
#include "data/sampler.h"
#include "data_test_util.h"

namespace hg {
namespace {

using namespace hg::test;

TEST(Sampler, OffsetIsAPureFunctionOfSeedStepAndSample) {
  for (int64_t step = 0; step < 5; ++step) {
    for (int64_t g = 0; g < 5; ++g) {
      EXPECT_EQ(sample_offset(42, step, g, 1000000, 769), sample_offset(42, step, g, 1000000, 769));
    }
  }
  std::set<int64_t> seen;
  for (uint64_t seed : {1ull, 2ull}) {
    for (int64_t step = 0; step < 10; ++step) {
      for (int64_t g = 0; g < 10; ++g)
        seen.insert(sample_offset(seed, step, g, int64_t{1} << 40, 769));
    }
  }
  EXPECT_EQ(seen.size(), 200u);  // seeds, steps and samples all change the draw
}

TEST(Sampler, OffsetsCoverTheWholeRangeUniformly) {
  const int64_t num_tokens = 1000, window = 769, starts = num_tokens - window + 1;  // 232 starts
  std::vector<int64_t> hits(static_cast<size_t>(starts), 0);
  const int64_t draws = 232000;
  for (int64_t i = 0; i < draws; ++i) {
    int64_t offset = sample_offset(7, i / 64, i % 64, num_tokens, window);
    ASSERT_GE(offset, 0);
    ASSERT_LE(offset, num_tokens - window);
    ++hits[static_cast<size_t>(offset)];
  }
  double chi2 = 0;
  for (int64_t h : hits) chi2 += (h - 1000.0) * (h - 1000.0) / 1000.0;
  EXPECT_LT(chi2, 350.0);                          // 231 degrees of freedom: p < 1e-6 above ~350
  EXPECT_EQ(sample_offset(7, 3, 4, 769, 769), 0);  // exactly one window fits
}

TEST(Sampler, HugeRangesStayInRangeThroughTheRejectionPath) {
  // range = 2^62 + 1: a quarter of raw draws are rejected, so redraws happen here.
  const int64_t window = 769, num_tokens = (int64_t{1} << 62) + window;
  for (int64_t g = 0; g < 2000; ++g) {
    int64_t offset = sample_offset(3, 0, g, num_tokens, window);
    ASSERT_GE(offset, 0);
    ASSERT_LE(offset, num_tokens - window);
    ASSERT_EQ(offset, sample_offset(3, 0, g, num_tokens, window));
  }
  const int64_t largest = std::numeric_limits<int64_t>::max();
  EXPECT_LE(sample_offset(3, 1, 1, largest, 1), largest - 1);
  EXPECT_THROW(sample_offset(1, 0, 0, 10, 11), std::invalid_argument);
}

class BatchLoaderTest : public testing::Test {
 protected:
  void SetUp() override {
    bytes_ = random_bytes(5000, 21);
    write_file(tmp_ / "in", bytes_);
    run_prep({"--input", tmp_ / "in", "--output", tmp_ / "ds", "--shard-bytes", "300",
              "--valid-bytes", "0", "--test-bytes", "0"});
    data_ = std::make_unique<TokenDataset>(tmp_ / "ds", "train");
  }

  // The global batch read by `dp` replicas with micro-batches of `micro_batch`, concatenated in
  // replica order, checking each micro-batch's bookkeeping on the way.
  std::vector<int32_t> global_batch(int64_t step, int batch, int dp, int micro_batch,
                                    bool prefetch = true) {
    std::vector<int32_t> tokens;
    int64_t expected_first = 0;
    for (int r = 0; r < dp; ++r) {
      BatchLoader loader(*data_, 99, kSeqLen, batch, dp, r, micro_batch, prefetch);
      auto micro_batches = loader.load_step(step);
      EXPECT_EQ(static_cast<int>(micro_batches.size()), batch / dp / micro_batch);
      for (const auto& mb : micro_batches) {
        EXPECT_EQ(mb.first_sample, expected_first);
        EXPECT_EQ(mb.sequences, micro_batch);
        EXPECT_EQ(mb.tokens.size(), static_cast<size_t>(micro_batch * (kSeqLen + 1)));
        expected_first += micro_batch;
        tokens.insert(tokens.end(), mb.tokens.begin(), mb.tokens.end());
      }
    }
    EXPECT_EQ(expected_first, batch);
    return tokens;
  }

  static constexpr int kSeqLen = 16;
  TempDir tmp_;
  std::vector<uint8_t> bytes_;
  std::unique_ptr<TokenDataset> data_;
};

TEST_F(BatchLoaderTest, SequenceIsTheWindowAtTheSampledOffset) {
  const int batch = 8;
  for (int64_t step : {0, 1, 17}) {
    std::vector<int32_t> tokens = global_batch(step, batch, 1, batch);
    for (int g = 0; g < batch; ++g) {
      int64_t offset = sample_offset(99, step, g, data_->num_tokens(), kSeqLen + 1);
      std::vector<int32_t> expected(bytes_.begin() + offset, bytes_.begin() + offset + kSeqLen + 1);
      std::vector<int32_t> got(tokens.begin() + g * (kSeqLen + 1),
                               tokens.begin() + (g + 1) * (kSeqLen + 1));
      EXPECT_EQ(got, expected) << "step " << step << " sample " << g;
    }
  }
}

TEST_F(BatchLoaderTest, GlobalBatchIsTheSameForEveryLayout) {
  for (int batch : {8, 12}) {
    for (int64_t step : {0, 5}) {
      const std::vector<int32_t> reference = global_batch(step, batch, 1, batch);
      for (int dp : {1, 2, 4}) {
        for (int mb = 1; mb <= batch / dp; ++mb) {
          if ((batch / dp) % mb != 0) continue;
          SCOPED_TRACE("batch " + std::to_string(batch) + " dp " + std::to_string(dp) +
                       " micro_batch " + std::to_string(mb));
          EXPECT_EQ(global_batch(step, batch, dp, mb, /*prefetch=*/true), reference);
          EXPECT_EQ(global_batch(step, batch, dp, mb, /*prefetch=*/false), reference);
        }
      }
    }
  }
}

TEST_F(BatchLoaderTest, PrefetchGivesTheSameStepsInOrderOrAfterAJump) {
  BatchLoader prefetching(*data_, 5, kSeqLen, 8, 2, 1, 2, true);
  BatchLoader direct(*data_, 5, kSeqLen, 8, 2, 1, 2, false);
  for (int64_t step : {0, 1, 2, 3, 10, 11, 4, 4}) {
    auto a = prefetching.load_step(step);
    auto b = direct.load_step(step);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].tokens, b[i].tokens) << "step " << step;
      EXPECT_EQ(a[i].first_sample, b[i].first_sample);
    }
  }
  const auto loaded = prefetching.load_step(0);
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_EQ(loaded[0].first_sample, 4);
  EXPECT_EQ(loaded[1].first_sample, 6);
  // The stages that load nothing get the same positions from the same rule.
  const auto positions = replica_micro_batches(8, 2, 1, 2);
  ASSERT_EQ(positions.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(positions[i].first_sample, loaded[i].first_sample);
    EXPECT_EQ(positions[i].sequences, loaded[i].sequences);
    EXPECT_TRUE(positions[i].tokens.empty());
  }
}

TEST_F(BatchLoaderTest, RejectsBatchesThatDoNotDivide) {
  try {
    BatchLoader(*data_, 1, kSeqLen, 8, 3, 0, 1);
    FAIL() << "dp = 3 does not divide batch 8";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("parallel.dp = 3"), std::string::npos) << e.what();
  }
  try {
    BatchLoader(*data_, 1, kSeqLen, 8, 2, 0, 3);
    FAIL() << "micro_batch = 3 does not divide 4";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("train.micro_batch = 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(BatchLoader(*data_, 1, kSeqLen, 8, 2, 2, 1), UsageError);  // rank outside dp
}

TEST_F(BatchLoaderTest, RejectsASplitShorterThanOneWindow) {
  try {
    BatchLoader(*data_, 1, 5000, 8, 1, 0, 8);
    FAIL() << "5000 tokens hold no window of 5001";
  } catch (const UsageError& e) {
    std::string message = e.what();
    EXPECT_NE(message.find(tmp_ / "ds"), std::string::npos) << message;
    EXPECT_NE(message.find("seq_len + 1 = 5001"), std::string::npos) << message;
  }
  EXPECT_NO_THROW(
      BatchLoader(*data_, 1, 4999, 8, 1, 0, 8).load_step(0));  // exactly one window fits
}

}  // namespace
}  // namespace hg
