// Every bad input of issue 3 gets one UsageError (exit code 2 at the CLI) whose message names the
// file and what is wrong, and prep leaves no partial output behind.
#include <gtest/gtest.h>

#include "core/error.h"
#include "data/dataset.h"
#include "data/hdf5_util.h"
#include "data/info.h"
#include "data/sampler.h"
#include "data_test_util.h"

namespace hg {
namespace {

using namespace hg::test;

// The UsageError message of f(), or a failure when it does not throw one.
template <class F>
std::string usage_error(F&& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no UsageError";
  return "";
}

#define EXPECT_CONTAINS(text, part)                          \
  EXPECT_NE(std::string(text).find(part), std::string::npos) \
      << "\"" << (text) << "\" lacks \"" << (part) << "\""

void set_int_attribute(const std::string& path, const char* name, int64_t value) {
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0) << path;
  h5::write_int64_attribute(file, name, value);
  H5Fclose(file);
}

class PrepRejects : public testing::Test {
 protected:
  void SetUp() override { write_file(tmp_ / "good", random_bytes(1000, 41)); }
  TempDir tmp_;
};

TEST_F(PrepRejects, AMissingInput) {
  std::string message =
      prep_error({"--input", tmp_ / "good", tmp_ / "nope.txt", "--output", tmp_ / "ds"});
  EXPECT_CONTAINS(message, tmp_ / "nope.txt");
  EXPECT_CONTAINS(message, "does not exist");
  expect_no_output(tmp_.path(), "ds");
}

TEST_F(PrepRejects, AnEmptyInput) {
  write_file(tmp_ / "empty", {});
  std::string message =
      prep_error({"--input", tmp_ / "good", tmp_ / "empty", "--output", tmp_ / "ds"});
  EXPECT_CONTAINS(message, tmp_ / "empty");
  EXPECT_CONTAINS(message, "is empty");
  expect_no_output(tmp_.path(), "ds");
}

TEST_F(PrepRejects, ADirectoryAsInput) {
  fs::create_directory(tmp_ / "dir");
  std::string message = prep_error({"--input", tmp_ / "dir", "--output", tmp_ / "ds"});
  EXPECT_CONTAINS(message, tmp_ / "dir");
  EXPECT_CONTAINS(message, "is a directory");
  expect_no_output(tmp_.path(), "ds");
}

TEST_F(PrepRejects, AnExistingOutputWithoutForce) {
  run_prep({"--input", tmp_ / "good", "--output", tmp_ / "ds"});
  auto before = read_file(tmp_ / "ds/train-00000.h5");
  write_file(tmp_ / "other", random_bytes(500, 42));
  std::string message = prep_error({"--input", tmp_ / "other", "--output", tmp_ / "ds"});
  EXPECT_CONTAINS(message, tmp_ / "ds");
  EXPECT_CONTAINS(message, "already exists");
  EXPECT_CONTAINS(message, "--force");
  EXPECT_EQ(read_file(tmp_ / "ds/train-00000.h5"), before);  // untouched
  EXPECT_EQ(TokenDataset(tmp_ / "ds", "train").num_tokens(), 900);
}

TEST_F(PrepRejects, ForceOnADirectoryThatIsNotADataset) {
  fs::create_directory(tmp_ / "home");
  write_file(tmp_ / "home/thesis.tex", random_bytes(10, 43));
  std::string message =
      prep_error({"--input", tmp_ / "good", "--output", tmp_ / "home", "--force"});
  EXPECT_CONTAINS(message, tmp_ / "home/thesis.tex");
  EXPECT_CONTAINS(message, "refusing");
  EXPECT_TRUE(fs::exists(tmp_ / "home/thesis.tex"));
}

TEST_F(PrepRejects, AnOutputThatWouldSwallowTheInput) {
  std::string message =
      prep_error({"--input", tmp_ / "good", "--output", tmp_ / "good", "--force"});
  EXPECT_CONTAINS(message, tmp_ / "good");
  EXPECT_EQ(read_file(tmp_ / "good").size(), 1000u);
}

TEST_F(PrepRejects, ATokenIdNotBelowTheVocabulary) {
  std::vector<int32_t> ids = random_ids(500, 300, 44);
  ids[321] = 300;
  write_file(tmp_ / "ids.bin", u16_bytes(ids));
  std::string message =
      prep_error({"--input", tmp_ / "ids.bin", "--output", tmp_ / "ds", "--format", "u16",
                  "--vocab-size", "300", "--shard-bytes", "100"});
  EXPECT_CONTAINS(message, tmp_ / "ids.bin");
  EXPECT_CONTAINS(message, "token id 300 at byte offset 642");
  EXPECT_CONTAINS(message, "--vocab-size");
  expect_no_output(tmp_.path(), "ds");

  write_file(tmp_ / "text", {'a', 'b', 200});
  message = prep_error({"--input", tmp_ / "text", "--output", tmp_ / "ds", "--vocab-size", "128"});
  EXPECT_CONTAINS(message, "token id 200 at byte offset 2");
  expect_no_output(tmp_.path(), "ds");
}

TEST_F(PrepRejects, AnOddSizedU16Input) {
  std::string message = prep_error(
      {"--input", tmp_ / "good", tmp_ / "good", "--output", tmp_ / "ds", "--format", "u16"});
  EXPECT_TRUE(message.empty()) << message;  // 1000 bytes is fine
  fs::remove_all(tmp_ / "ds");
  write_file(tmp_ / "odd", random_bytes(1001, 45));
  message = prep_error({"--input", tmp_ / "odd", "--output", tmp_ / "ds", "--format", "u16"});
  EXPECT_CONTAINS(message, tmp_ / "odd");
  EXPECT_CONTAINS(message, "odd number of bytes");
  expect_no_output(tmp_.path(), "ds");
}

TEST_F(PrepRejects, SplitsThatLeaveNoTrainingData) {
  std::string message = prep_error({"--input", tmp_ / "good", "--output", tmp_ / "ds",
                                    "--valid-bytes", "600", "--test-bytes", "400"});
  EXPECT_CONTAINS(message, "no training data");
  expect_no_output(tmp_.path(), "ds");
}

TEST_F(PrepRejects, MalformedCommandLines) {
  EXPECT_CONTAINS(prep_error({"--input", tmp_ / "good"}), "no --output");
  EXPECT_CONTAINS(prep_error({"--output", tmp_ / "ds"}), "no --input");
  EXPECT_CONTAINS(
      prep_error({"--input", tmp_ / "good", "--output", tmp_ / "ds", "--shard-bytes", "64M"}),
      "--shard-bytes expects an integer");
  EXPECT_CONTAINS(
      prep_error({"--input", tmp_ / "good", "--output", tmp_ / "ds", "--format", "utf8"}),
      "--format must be bytes or u16");
  EXPECT_CONTAINS(prep_error({"--input", tmp_ / "good", "--output", tmp_ / "ds", "--shuffle"}),
                  "'--shuffle'");
  EXPECT_CONTAINS(prep_error({"--input", tmp_ / "good", "--output"}), "--output needs a value");
  EXPECT_CONTAINS(
      prep_error({"--input", tmp_ / "good", "--output", tmp_ / "ds", "--vocab-size", "300"}),
      "at most 256");
  expect_no_output(tmp_.path(), "ds");
}

// Reader-side checks on prepared datasets that were damaged afterwards.
class ReaderRejects : public testing::Test {
 protected:
  void SetUp() override {
    write_file(tmp_ / "ids.bin", u16_bytes(random_ids(1000, 300, 51)));
    prep("a", 300);
  }
  // A u16 dataset of the same ids with 3 train shards (900 tokens, 300 per shard).
  void prep(const std::string& name, int vocab) {
    run_prep({"--input", tmp_ / "ids.bin", "--output", tmp_ / name, "--format", "u16",
              "--vocab-size", std::to_string(vocab), "--shard-bytes", "600"});
  }
  std::string shard(const std::string& name, int i) {
    return tmp_ / (name + "/train-0000" + std::to_string(i) + ".h5");
  }
  std::string open_error() {
    return usage_error([&] { TokenDataset(tmp_ / "a", "train"); });
  }
  TempDir tmp_;
};

TEST_F(ReaderRejects, AMissingDirectory) {
  std::string message = usage_error([&] { TokenDataset(tmp_ / "nowhere", "train"); });
  EXPECT_CONTAINS(message, tmp_ / "nowhere");
  EXPECT_CONTAINS(message, "does not exist");
  EXPECT_CONTAINS(message, "hourglass prep");
  EXPECT_CONTAINS(usage_error([&] { info_dataset_main(tmp_ / "nowhere"); }), tmp_ / "nowhere");
}

TEST_F(ReaderRejects, ADirectoryWithNoShards) {
  fs::create_directory(tmp_ / "empty");
  std::string message = usage_error([&] { TokenDataset(tmp_ / "empty", "train"); });
  EXPECT_CONTAINS(message, tmp_ / "empty");
  EXPECT_CONTAINS(message, "no shards of split 'train'");
  message = usage_error([&] { info_dataset_main(tmp_ / "empty"); });
  EXPECT_CONTAINS(message, tmp_ / "empty");
  EXPECT_CONTAINS(message, "no token shards");
}

TEST_F(ReaderRejects, ASplitThatWasNotPrepared) {
  write_file(tmp_ / "small", random_bytes(100, 52));
  run_prep({"--input", tmp_ / "small", "--output", tmp_ / "b", "--test-bytes", "0"});
  std::string message = usage_error([&] { TokenDataset(tmp_ / "b", "test"); });
  EXPECT_CONTAINS(message, "no shards of split 'test'");
  EXPECT_CONTAINS(message, "--test-bytes");
  EXPECT_CONTAINS(usage_error([&] { TokenDataset(tmp_ / "b", "dev"); }),
                  "unknown data split 'dev'");
}

TEST_F(ReaderRejects, AMissingShard) {
  fs::remove(shard("a", 1));
  std::string message = open_error();
  EXPECT_CONTAINS(message, shard("a", 1));
  EXPECT_CONTAINS(message, "is missing");
}

TEST_F(ReaderRejects, ShardsOfDifferentVocabularies) {
  prep("b", 400);
  fs::copy_file(shard("b", 1), shard("a", 1), fs::copy_options::overwrite_existing);
  std::string message = open_error();
  EXPECT_CONTAINS(message, shard("a", 1));
  EXPECT_CONTAINS(message, "vocab_size 400");
  EXPECT_CONTAINS(message, "vocab_size 400 but " + shard("a", 0) + " has 300");
}

TEST_F(ReaderRejects, ShardsOfDifferentPrepRuns) {
  write_file(tmp_ / "ids.bin", u16_bytes(random_ids(1000, 300, 53)));
  prep("b", 300);
  fs::copy_file(shard("b", 2), shard("a", 2), fs::copy_options::overwrite_existing);
  std::string message = open_error();
  EXPECT_CONTAINS(message, shard("a", 2));
  EXPECT_CONTAINS(message, "different prep run");
}

TEST_F(ReaderRejects, ShardsOfDifferentFormatVersions) {
  set_int_attribute(shard("a", 1), "version", 2);
  std::string message = open_error();
  EXPECT_CONTAINS(message, shard("a", 1));
  EXPECT_CONTAINS(message, "version 2");
  EXPECT_CONTAINS(message, "reads version 1");
}

TEST_F(ReaderRejects, AnHdf5FileThatIsNotAShard) {
  fs::remove(shard("a", 0));
  hid_t file = H5Fcreate(shard("a", 0).c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  h5::write_string_attribute(file, "format", "hourglass-checkpoint");
  H5Fclose(file);
  std::string message = open_error();
  EXPECT_CONTAINS(message, shard("a", 0));
  EXPECT_CONTAINS(message, "not an hourglass token shard");
  EXPECT_CONTAINS(message, "'hourglass-checkpoint'");
}

TEST_F(ReaderRejects, AFileThatIsNotHdf5) {
  write_file(shard("a", 2), {'h', 'e', 'l', 'l', 'o', '\n'});
  std::string message = open_error();
  EXPECT_CONTAINS(message, shard("a", 2));
  EXPECT_CONTAINS(message, "not an HDF5 file");
  EXPECT_CONTAINS(usage_error([&] { info_dataset_main(tmp_ / "a"); }), shard("a", 2));
}

TEST_F(ReaderRejects, ATruncatedShard) {
  fs::resize_file(shard("a", 1), fs::file_size(shard("a", 1)) / 2);
  std::string message = open_error();
  EXPECT_CONTAINS(message, shard("a", 1));
  EXPECT_CONTAINS(message, "truncated");
}

TEST_F(ReaderRejects, AShardTruncatedToNothing) {
  fs::resize_file(shard("a", 0), 0);
  std::string message = open_error();
  EXPECT_CONTAINS(message, shard("a", 0));
  EXPECT_CONTAINS(message, "not an HDF5 file");
}

TEST_F(ReaderRejects, ARenamedShard) {
  fs::rename(shard("a", 2), tmp_ / "a/train-00003.h5");
  EXPECT_CONTAINS(open_error(), shard("a", 2) + " is missing");
  fs::rename(tmp_ / "a/train-00003.h5", shard("a", 2));
  fs::rename(tmp_ / "a/valid-00000.h5", tmp_ / "a/test-00001.h5");
  fs::remove(tmp_ / "a/test-00000.h5");
  fs::rename(tmp_ / "a/test-00001.h5", tmp_ / "a/test-00000.h5");
  std::string message = usage_error([&] { TokenDataset(tmp_ / "a", "test"); });
  EXPECT_CONTAINS(message, tmp_ / "a/test-00000.h5");
  EXPECT_CONTAINS(message, "split 'valid'");
}

TEST_F(ReaderRejects, ATokenIdNotBelowTheVocabularyAtReadTime) {
  // Shards whose vocab_size was edited below the ids they hold: the reader catches it on the tokens
  // it reads.
  for (int i = 0; i < 3; ++i) set_int_attribute(shard("a", i), "vocab_size", 290);
  TokenDataset data(tmp_ / "a", "train");
  std::vector<int32_t> tokens(static_cast<size_t>(data.num_tokens()));
  std::string message = usage_error([&] { data.read(0, data.num_tokens(), tokens.data()); });
  EXPECT_CONTAINS(message, tmp_ / "a/train-0000");
  EXPECT_CONTAINS(message, "not below its vocab_size 290");
}

// The guard of a checkpoint finding (fuzz_checkpoint: an extent far beyond the data in the file is
// allocated in full by a reader), applied to shards: /tokens declaring 2^40 tokens it does not
// hold read back as fill values.
TEST_F(ReaderRejects, AShardDeclaringMoreTokensThanItHolds) {
  hid_t file = H5Fopen(shard("a", 1).c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  H5Ldelete(file, "tokens", H5P_DEFAULT);
  const hsize_t dims[1] = {hsize_t{1} << 40}, chunk[1] = {1024};
  h5::Handle space = h5::space(H5Screate_simple(1, dims, nullptr));
  h5::Handle create = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
  H5Pset_chunk(create.get(), 1, chunk);
  h5::dataset(H5Dcreate2(file, "tokens", H5T_STD_U16LE, space.get(), H5P_DEFAULT, create.get(),
                         H5P_DEFAULT));
  H5Fclose(file);
  std::string message = open_error();
  EXPECT_CONTAINS(message, shard("a", 1));
  EXPECT_CONTAINS(message,
                  "/tokens declares shape [1099511627776] of 2-byte values but the file "
                  "holds 0 bytes of its data");
}

// Found by tests/fuzz/fuzz_file_bytes (shard_bytes): a shard whose attributes and /tokens header
// are intact but whose chunk index is damaged opened, and its read failed with a runtime_error
// (exit 3). Now a UsageError naming the shard and the fix: at open, where the size of its data
// cannot be found (h5::missing_data), or else when a read fails.
TEST(ReaderRejectsFuzzed, AShardWhoseChunkIndexIsDamaged) {
  TempDir tmp;
  fs::create_directory(tmp / "d");
  fs::copy_file(HG_SOURCE_DIR "/tests/fuzz/corpus/shard_bytes/found_damaged_chunk_index.h5",
                tmp / "d/train-00000.h5");
  std::string message = usage_error([&] {
    TokenDataset data(tmp / "d", "train");
    std::vector<int32_t> tokens(static_cast<size_t>(data.num_tokens()));
    data.read(0, data.num_tokens(), tokens.data());
  });
  EXPECT_CONTAINS(message, tmp / "d/train-00000.h5");
  EXPECT_CONTAINS(message, "the shard is");
  EXPECT_CONTAINS(message, "damaged");
  EXPECT_CONTAINS(message, "hourglass prep");
}

}  // namespace
}  // namespace hg
