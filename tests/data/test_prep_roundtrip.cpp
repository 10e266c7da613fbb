// prep -> TokenDataset round trips (bytes and u16, across shard boundaries, several inputs),
// split boundaries, the shard attributes of ARCHITECTURE.md §4, info, --force, file locking.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>

#include "data/dataset.h"
#include "data/info.h"
#include "data/sha256.h"
#include "data/shard_format.h"
#include "data_test_util.h"

namespace hg {
namespace {

using namespace hg::test;

std::vector<int32_t> slice(const std::vector<int32_t>& v, int64_t begin, int64_t end) {
  return std::vector<int32_t>(v.begin() + begin, v.begin() + end);
}

std::vector<int32_t> read_all(const TokenDataset& data) {
  std::vector<int32_t> tokens(static_cast<size_t>(data.num_tokens()));
  data.read(0, data.num_tokens(), tokens.data());
  return tokens;
}

// Every split read whole, and windows of every length around every shard boundary.
void expect_split(const std::string& dir, const std::string& split,
                  const std::vector<int32_t>& expected, int64_t shard_tokens) {
  SCOPED_TRACE(split);
  TokenDataset data(dir, split);
  ASSERT_EQ(data.num_tokens(), static_cast<int64_t>(expected.size()));
  EXPECT_EQ(data.num_shards(),
            (static_cast<int64_t>(expected.size()) + shard_tokens - 1) / shard_tokens);
  EXPECT_EQ(read_all(data), expected);
  for (int s = 1; s < data.num_shards(); ++s) {
    int64_t boundary = s * shard_tokens;
    EXPECT_EQ(data.locate(boundary).shard, s);
    EXPECT_EQ(data.locate(boundary).offset, 0);
    EXPECT_EQ(data.locate(boundary - 1).shard, s - 1);
    for (int64_t begin = std::max<int64_t>(0, boundary - 3); begin <= boundary; ++begin) {
      for (int64_t end = boundary; end <= std::min<int64_t>(data.num_tokens(), boundary + 3);
           ++end) {
        std::vector<int32_t> got(static_cast<size_t>(end - begin));
        data.read(begin, end - begin, got.data());
        ASSERT_EQ(got, slice(expected, begin, end)) << "[" << begin << ", " << end << ")";
      }
    }
  }
  // A window spanning several shards.
  if (data.num_tokens() >= 3 * shard_tokens + 2) {
    std::vector<int32_t> got(static_cast<size_t>(2 * shard_tokens + 5));
    data.read(shard_tokens - 3, static_cast<int64_t>(got.size()), got.data());
    EXPECT_EQ(got, slice(expected, shard_tokens - 3,
                         shard_tokens - 3 + static_cast<int64_t>(got.size())));
  }
}

TEST(Prep, BytesRoundTripAcrossShardsAndFiles) {
  TempDir tmp;
  std::vector<std::vector<uint8_t>> parts = {random_bytes(1000, 1), random_bytes(1, 2),
                                             random_bytes(2345, 3)};
  std::vector<int32_t> all;
  for (size_t i = 0; i < parts.size(); ++i) {
    write_file(tmp / ("part" + std::to_string(i)), parts[i]);
    all.insert(all.end(), parts[i].begin(), parts[i].end());
  }
  ASSERT_EQ(
      run_prep({"--input", tmp / "part0", tmp / "part1", tmp / "part2", "--output", tmp / "ds",
                "--valid-bytes", "300", "--test-bytes", "211", "--shard-bytes", "97"}),
      0);
  const int64_t n = static_cast<int64_t>(all.size());
  expect_split(tmp / "ds", "train", slice(all, 0, n - 511), 97);
  expect_split(tmp / "ds", "valid", slice(all, n - 511, n - 211), 97);
  expect_split(tmp / "ds", "test", slice(all, n - 211, n), 97);
  TokenDataset train(tmp / "ds", "train");
  EXPECT_EQ(train.vocab_size(), 256);
  EXPECT_EQ(train.token_bytes(), 1);
  EXPECT_EQ(train.sources(), (std::vector<std::string>{"part0", "part1", "part2"}));
  EXPECT_EQ(train.source_bytes(), (std::vector<int64_t>{1000, 1, 2345}));
  std::vector<uint8_t> concatenated(all.begin(), all.end());
  EXPECT_EQ(train.sha256(), sha256_hex(concatenated.data(), concatenated.size()));
  // Nothing but the shards in the output, nothing left next to it.
  for (const auto& entry : fs::directory_iterator(tmp.path())) {
    std::string name = entry.path().filename().string();
    EXPECT_TRUE(name == "ds" || name.rfind("part", 0) == 0) << name;
  }
}

TEST(Prep, U16RoundTripWideTokens) {
  TempDir tmp;
  std::vector<int32_t> a = random_ids(777, 1000, 4), b = random_ids(500, 1000, 5);
  write_file(tmp / "a.bin", u16_bytes(a));
  write_file(tmp / "b.bin", u16_bytes(b));
  ASSERT_EQ(run_prep({"--input", tmp / "a.bin", tmp / "b.bin", "--output", tmp / "ds", "--format",
                      "u16", "--vocab-size", "1000", "--shard-bytes", "200", "--valid-bytes", "100",
                      "--test-bytes", "0"}),
            0);
  std::vector<int32_t> all = a;
  all.insert(all.end(), b.begin(), b.end());
  const int64_t n = static_cast<int64_t>(all.size());
  expect_split(tmp / "ds", "train", slice(all, 0, n - 50),
               100);  // 200 bytes of uint16 = 100 tokens
  expect_split(tmp / "ds", "valid", slice(all, n - 50, n), 100);
  TokenDataset train(tmp / "ds", "train");
  EXPECT_EQ(train.vocab_size(), 1000);
  EXPECT_EQ(train.token_bytes(), 2);
  EXPECT_EQ(dataset_splits(tmp / "ds"), (std::vector<std::string>{"train", "valid"}));
}

TEST(Prep, U16SmallVocabularyIsStoredAsUint8AndDefaultsToLargestIdPlusOne) {
  TempDir tmp;
  std::vector<int32_t> ids = random_ids(3000, 200, 6);
  ids[1234] = 211;  // the largest id
  write_file(tmp / "ids.bin", u16_bytes(ids));
  ASSERT_EQ(run_prep({"--input", tmp / "ids.bin", "--output", tmp / "ds", "--format", "u16",
                      "--shard-bytes", "1000"}),
            0);
  expect_split(tmp / "ds", "train", slice(ids, 0, 2700), 1000);
  expect_split(tmp / "ds", "valid", slice(ids, 2700, 2850), 1000);
  expect_split(tmp / "ds", "test", slice(ids, 2850, 3000), 1000);
  TokenDataset train(tmp / "ds", "train");
  EXPECT_EQ(train.vocab_size(), 212);
  EXPECT_EQ(train.token_bytes(), 1);
}

TEST(Prep, DefaultSplitIsFivePercentEachAtTheEnd) {
  TempDir tmp;
  auto bytes = random_bytes(1019, 7);
  write_file(tmp / "in", bytes);
  ASSERT_EQ(run_prep({"--input", tmp / "in", "--output", tmp / "ds"}), 0);
  std::vector<int32_t> all = as_ids(bytes);
  expect_split(tmp / "ds", "train", slice(all, 0, 919), 64 << 20);  // 1019 / 20 = 50 each
  expect_split(tmp / "ds", "valid", slice(all, 919, 969), 64 << 20);
  expect_split(tmp / "ds", "test", slice(all, 969, 1019), 64 << 20);
}

TEST(Prep, EnwikSizedSplitArithmetic) {
  // 100,000,000 bytes must give 90M / 5M / 5M; checked on a scaled-down input with the same
  // divisibility (2,000 bytes -> 1800 / 100 / 100).
  TempDir tmp;
  write_file(tmp / "in", random_bytes(2000, 8));
  run_prep({"--input", tmp / "in", "--output", tmp / "ds"});
  EXPECT_EQ(TokenDataset(tmp / "ds", "train").num_tokens(), 1800);
  EXPECT_EQ(TokenDataset(tmp / "ds", "valid").num_tokens(), 100);
  EXPECT_EQ(TokenDataset(tmp / "ds", "test").num_tokens(), 100);
}

TEST(Prep, TinyInputHasOnlyATrainSplit) {
  TempDir tmp;
  write_file(tmp / "in", random_bytes(19, 9));
  run_prep({"--input", tmp / "in", "--output", tmp / "ds"});
  EXPECT_EQ(dataset_splits(tmp / "ds"), std::vector<std::string>{"train"});
  EXPECT_EQ(TokenDataset(tmp / "ds", "train").num_tokens(), 19);
}

// The attributes of ARCHITECTURE.md §4, read with the plain HDF5 API.
TEST(Prep, ShardAttributesFollowTheSpec) {
  TempDir tmp;
  auto bytes = random_bytes(5000, 10);
  write_file(tmp / "enwik_tiny", bytes);
  run_prep({"--input", tmp / "enwik_tiny", "--output", tmp / "ds", "--shard-bytes", "1000"});
  hid_t file = H5Fopen((tmp / "ds/train-00002.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0);

  auto read_vlen_string = [&](const char* name) {
    hid_t attr = H5Aopen(file, name, H5P_DEFAULT);
    hid_t type = H5Aget_type(attr);
    EXPECT_EQ(H5Tget_class(type), H5T_STRING) << name;
    EXPECT_GT(H5Tis_variable_str(type), 0) << name;
    EXPECT_EQ(H5Tget_cset(type), H5T_CSET_UTF8) << name;
    char* value = nullptr;
    H5Aread(attr, type, &value);
    std::string result = value;
    H5free_memory(value);
    H5Tclose(type);
    H5Aclose(attr);
    return result;
  };
  auto read_int = [&](const char* name) {
    hid_t attr = H5Aopen(file, name, H5P_DEFAULT);
    int64_t value = -1;
    H5Aread(attr, H5T_NATIVE_INT64, &value);
    H5Aclose(attr);
    return value;
  };
  EXPECT_EQ(read_vlen_string("format"), "hourglass-tokens");
  EXPECT_EQ(read_int("version"), 1);
  EXPECT_EQ(read_int("vocab_size"), 256);
  EXPECT_EQ(read_vlen_string("split"), "train");
  EXPECT_EQ(read_int("shard"), 2);
  EXPECT_EQ(read_int("num_shards"), 5);  // 4500 train tokens in shards of 1000
  EXPECT_EQ(read_vlen_string("sha256"), sha256_hex(bytes.data(), bytes.size()));

  hid_t dataset = H5Dopen2(file, "/tokens", H5P_DEFAULT);
  ASSERT_GE(dataset, 0);
  hid_t type = H5Dget_type(dataset);
  EXPECT_GT(H5Tequal(type, H5T_STD_U8LE), 0);
  hid_t dcpl = H5Dget_create_plist(dataset);
  EXPECT_EQ(H5Pget_layout(dcpl), H5D_CHUNKED);
  hid_t space = H5Dget_space(dataset);
  hsize_t dims[1];
  EXPECT_EQ(H5Sget_simple_extent_ndims(space), 1);
  H5Sget_simple_extent_dims(space, dims, nullptr);
  EXPECT_EQ(dims[0], 1000u);
  H5Sclose(space);
  H5Pclose(dcpl);
  H5Tclose(type);
  H5Dclose(dataset);
  H5Fclose(file);
}

TEST(Prep, FlagsWithEqualsSignsAndLeadingSubcommandWord) {
  TempDir tmp;
  write_file(tmp / "in", random_bytes(100, 11));
  ASSERT_EQ(run_prep({"prep", "--input=" + (tmp / "in"), "--output=" + (tmp / "ds"),
                      "--valid-bytes=10", "--test-bytes=0", "--format=bytes"}),
            0);
  EXPECT_EQ(TokenDataset(tmp / "ds", "valid").num_tokens(), 10);
  EXPECT_EQ(TokenDataset(tmp / "ds", "train").num_tokens(), 90);
}

TEST(Prep, HelpPrintsUsage) {
  testing::internal::CaptureStdout();
  EXPECT_EQ(prep_main({"--help"}), 0);
  EXPECT_NE(testing::internal::GetCapturedStdout().find("--shard-bytes"), std::string::npos);
}

TEST(Prep, ForceReplacesAnExistingDataset) {
  TempDir tmp;
  auto first = random_bytes(400, 12), second = random_bytes(600, 13);
  write_file(tmp / "first", first);
  write_file(tmp / "second", second);
  run_prep({"--input", tmp / "first", "--output", tmp / "ds", "--shard-bytes", "50"});
  ASSERT_EQ(TokenDataset(tmp / "ds", "train").num_shards(), 8);
  run_prep({"--input", tmp / "second", "--output", tmp / "ds", "--force"});
  TokenDataset train(tmp / "ds", "train");
  EXPECT_EQ(train.num_shards(), 1);
  EXPECT_EQ(read_all(train), slice(as_ids(second), 0, 540));
  EXPECT_FALSE(fs::exists(tmp / "ds/train-00001.h5"));  // no stale shards of the old dataset
  for (const auto& entry : fs::directory_iterator(tmp.path())) {
    EXPECT_NE(entry.path().filename().string()[0], '.') << "left behind: " << entry.path();
  }
}

TEST(Prep, CreatesMissingParentDirectories) {
  TempDir tmp;
  write_file(tmp / "in", random_bytes(100, 14));
  run_prep({"--input", tmp / "in", "--output", tmp / "a/b/ds/"});
  EXPECT_EQ(TokenDataset(tmp / "a/b/ds", "train").num_tokens(), 90);
}

TEST(Info, PrintsSplitsShardsTokensVocabularyAndSources) {
  TempDir tmp;
  write_file(tmp / "alpha.txt", random_bytes(1500, 15));
  write_file(tmp / "beta.txt", random_bytes(500, 16));
  run_prep({"--input", tmp / "alpha.txt", tmp / "beta.txt", "--output", tmp / "ds", "--shard-bytes",
            "1000"});
  testing::internal::CaptureStdout();
  EXPECT_EQ(info_dataset_main(tmp / "ds"), 0);
  std::string out = testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("vocabulary  256 (uint8 tokens)"), std::string::npos) << out;
  EXPECT_NE(out.find("alpha.txt (1500 bytes)"), std::string::npos) << out;
  EXPECT_NE(out.find("beta.txt (500 bytes)"), std::string::npos) << out;
  EXPECT_NE(out.find("train          2           1800"), std::string::npos) << out;
  EXPECT_NE(out.find("valid          1            100"), std::string::npos) << out;
  EXPECT_NE(out.find("test           1            100"), std::string::npos) << out;
  EXPECT_NE(out.find("total                      2000"), std::string::npos) << out;
}

// A writer holding an exclusive lock (what HDF5 takes when it opens a file for writing) must not
// stop readers: TokenDataset opens with file locking off.
TEST(Dataset, OpensShardsLockedByAWriter) {
  TempDir tmp;
  write_file(tmp / "in", random_bytes(1000, 17));
  run_prep({"--input", tmp / "in", "--output", tmp / "ds"});
  int fd = open((tmp / "ds/train-00000.h5").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(flock(fd, LOCK_EX | LOCK_NB), 0);
  TokenDataset first(tmp / "ds", "train");
  TokenDataset second(tmp / "ds", "train");  // and many readers at once
  std::vector<int32_t> a(10), b(10);
  first.read(5, 10, a.data());
  second.read(5, 10, b.data());
  EXPECT_EQ(a, b);
  flock(fd, LOCK_UN);
  close(fd);
}

}  // namespace
}  // namespace hg
