// Checkpoint files (ARCHITECTURE.md §5): the reference fixtures, bit-exact round trips, atomic
// writes, and the errors a damaged or foreign file produces.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "checkpoint/checkpoint_io.h"
#include "core/error.h"
#include "data/hdf5_util.h"
#include "trainer/config.h"

namespace hg {
namespace {

const std::string kFixtures = std::string(HG_SOURCE_DIR) + "/tests/data/reference-base/";

// Canonical names and shapes (§2) for the models of the fixtures: long_short, plain resampling
// with linear pooling and upsampling.
std::map<std::string, Shape> expected_shapes(const ModelConfig& m) {
  const int64_t d = m.d_model, V = m.vocab_size, F = m.ffn, he = m.heads * m.head_dim();
  const int64_t hr = int64_t{m.heads} * m.rank;
  std::map<std::string, Shape> shapes = {
      {"embed/weight", {V, d}}, {"head/weight", {d, V}}, {"head/bias", {V}}};
  auto norm = [&](const std::string& prefix, int64_t width) {
    shapes[prefix + "/gain"] = {width};
    shapes[prefix + "/bias"] = {width};
  };
  for (size_t i = 0; i < m.stacks.size(); ++i) {
    const std::string stack = "stacks/" + std::to_string(i);
    norm(stack + "/norm", d);
    for (int j = 0; j < m.stacks[i].blocks; ++j) {
      const std::string block = stack + "/blocks/" + std::to_string(j);
      norm(block + "/norm1", d);
      norm(block + "/norm2", d);
      for (const char* w : {"wq", "wk", "wv"}) shapes[block + "/attn/" + w] = {d, he};
      shapes[block + "/attn/wo"] = {he, d};
      for (const char* c : {"dconv_q", "dconv_k", "dconv_v"})
        shapes[block + "/attn/" + c] = {3, he};
      shapes[block + "/attn/proj/weight"] = {d, hr};
      shapes[block + "/attn/proj/bias"] = {hr};
      norm(block + "/attn/norm_window", he);
      norm(block + "/attn/norm_global", he);
      shapes[block + "/ffn/w1"] = {d, F};
      shapes[block + "/ffn/b1"] = {F};
      shapes[block + "/ffn/w2"] = {F, d};
      shapes[block + "/ffn/b2"] = {d};
    }
  }
  for (int i = 0; i < m.middle(); ++i) {
    const int64_t k = m.stacks[i + 1].shortening / m.stacks[i].shortening;
    const std::string down = "down/" + std::to_string(i), up = "up/" + std::to_string(i);
    shapes[down + "/pool/weight"] = {k * d, d};
    shapes[down + "/pool/bias"] = {d};
    shapes[up + "/linear/weight"] = {d, k * d};
    shapes[up + "/linear/bias"] = {k * d};
    norm(up + "/norm_out", d);
  }
  return shapes;
}

std::map<std::string, Shape> shapes_of(const TensorMap& tensors) {
  std::map<std::string, Shape> shapes;
  for (const auto& [name, t] : tensors) shapes[name] = t.shape();
  return shapes;
}

bool all_zero(const TensorMap& tensors) {
  for (const auto& [name, t] : tensors)
    for (int64_t i = 0; i < t.numel(); ++i)
      if (t[i] != 0.0f) return false;
  return true;
}

void expect_bit_identical(const TensorMap& a, const TensorMap& b) {
  ASSERT_EQ(shapes_of(a), shapes_of(b));
  for (const auto& [name, t] : a) {
    if (t.empty()) continue;
    EXPECT_EQ(std::memcmp(t.data(), b.at(name).data(), sizeof(float) * t.numel()), 0) << name;
  }
}

class CheckpointFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("hg-test-ckpt-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_))
      names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  std::filesystem::path dir_;
};

// What read_checkpoint throws for `file`, or "" when it reads it.
std::string read_rejection(const std::string& file) {
  try {
    read_checkpoint(file);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

TEST(CheckpointIo, FileNames) {
  EXPECT_EQ(checkpoint_file_name(0), "step-00000000.h5");
  EXPECT_EQ(checkpoint_file_name(42), "step-00000042.h5");
  EXPECT_EQ(checkpoint_file_name(123456789), "step-123456789.h5");
}

TEST(CheckpointIo, ReadsTheReferenceInitialCheckpoint) {
  const CheckpointData data = read_checkpoint(kFixtures + "init.h5");
  EXPECT_EQ(data.step, 0);
  const Config config = config_from_ini(data.config);
  EXPECT_EQ(config.model.hierarchy, "1@1 1@2 1@1");
  EXPECT_EQ(config.model.d_model, 32);
  EXPECT_EQ(config.model.heads, 2);
  EXPECT_EQ(config.model.ffn, 64);
  EXPECT_EQ(config.model.vocab_size, 256);
  EXPECT_EQ(config.model.window, 8);
  EXPECT_EQ(config.model.chunk, 4);
  EXPECT_EQ(config.model.rank, 2);
  EXPECT_EQ(config.model.attention, AttentionKind::LongShort);
  EXPECT_TRUE(config.model.dconv);
  const auto expected = expected_shapes(config.model);
  EXPECT_EQ(expected.size(), 78u);
  EXPECT_EQ(shapes_of(data.params), expected);
  EXPECT_EQ(shapes_of(data.exp_avg), expected);
  EXPECT_EQ(shapes_of(data.exp_avg_sq), expected);
  EXPECT_TRUE(all_zero(data.exp_avg));
  EXPECT_TRUE(all_zero(data.exp_avg_sq));
  // §1.6 initialisation: LN gains 1, biases 0, DConv taps [0.5, 1/6, 1/6].
  const Tensor& gain = data.params.at("stacks/1/norm/gain");
  EXPECT_EQ(gain[0], 1.0f);
  EXPECT_EQ(data.params.at("head/bias")[3], 0.0f);
  const Tensor& taps = data.params.at("stacks/0/blocks/0/attn/dconv_q");
  EXPECT_EQ(taps[0], 0.5f);
  EXPECT_EQ(taps[32], 1.0f / 6.0f);
}

TEST(CheckpointIo, ReadsHeadersAndSkipsMoments) {
  const CheckpointData header = read_checkpoint_header(kFixtures + "after5.h5");
  EXPECT_EQ(header.step, 5);
  EXPECT_EQ(config_from_ini(header.config).model.d_model, 32);
  EXPECT_TRUE(header.params.empty());
  const CheckpointData weights = read_checkpoint(kFixtures + "after5.h5", false);
  EXPECT_EQ(weights.params.size(), 78u);
  EXPECT_TRUE(weights.exp_avg.empty());
  EXPECT_TRUE(weights.exp_avg_sq.empty());
  EXPECT_FALSE(all_zero(read_checkpoint(kFixtures + "after5.h5").exp_avg));
}

TEST(CheckpointIo, ReadsTheReferenceGradients) {
  const TensorMap grads = read_tensor_group(kFixtures + "grads-step1.h5", "/grads");
  const CheckpointData init = read_checkpoint(kFixtures + "init.h5", false);
  EXPECT_EQ(shapes_of(grads), shapes_of(init.params));
  EXPECT_FALSE(all_zero(grads));
  try {
    read_tensor_group(kFixtures + "grads-step1.h5", "/nothing");
    ADD_FAILURE() << "read a missing group";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("'/nothing'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("grads-step1.h5"), std::string::npos) << e.what();
  }
}

TEST_F(CheckpointFiles, WriteThenReadIsBitIdentical) {
  CheckpointData data = read_checkpoint(kFixtures + "after5.h5");
  data.step = 42;
  data.config = parse_config({}).to_ini();
  data.params["extra/scalar"] = Tensor(Shape{});
  data.params["extra/scalar"][0] = -0.0f;
  data.params["extra/empty"] = Tensor(Shape{0, 3});
  data.exp_avg["extra/scalar"] = Tensor(Shape{});
  data.exp_avg["extra/empty"] = Tensor(Shape{0, 3});
  data.exp_avg_sq["extra/scalar"] = Tensor(Shape{});
  data.exp_avg_sq["extra/empty"] = Tensor(Shape{0, 3});
  data.exp_avg.at("embed/weight")[7] = std::nanf("");
  const std::string file = path(checkpoint_file_name(42));
  write_checkpoint(file, data);
  EXPECT_EQ(listing(), std::vector<std::string>{"step-00000042.h5"});
  const CheckpointData back = read_checkpoint(file);
  EXPECT_EQ(back.step, 42);
  EXPECT_EQ(back.config, data.config);
  expect_bit_identical(back.params, data.params);
  expect_bit_identical(back.exp_avg, data.exp_avg);
  expect_bit_identical(back.exp_avg_sq, data.exp_avg_sq);
  // Overwriting an existing checkpoint replaces it whole.
  data.step = 43;
  write_checkpoint(file, data);
  EXPECT_EQ(read_checkpoint_header(file).step, 43);
  EXPECT_EQ(listing(), std::vector<std::string>{"step-00000042.h5"});
}

TEST_F(CheckpointFiles, AttributesAndDatasetsHaveTheFixtureTypes) {
  CheckpointData data = read_checkpoint(kFixtures + "init.h5");
  const std::string file = path("types.h5");
  write_checkpoint(file, data);
  h5::QuietErrors quiet;
  for (const std::string& checkpoint : {file, kFixtures + "init.h5"}) {
    h5::Handle f = h5::file(H5Fopen(checkpoint.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    ASSERT_TRUE(f.valid());
    for (const char* name : {"format", "config"}) {
      h5::Handle a = h5::attribute(H5Aopen(f.get(), name, H5P_DEFAULT));
      h5::Handle t = h5::type(H5Aget_type(a.get()));
      h5::Handle s = h5::space(H5Aget_space(a.get()));
      EXPECT_GT(H5Tis_variable_str(t.get()), 0) << name;
      EXPECT_EQ(H5Tget_cset(t.get()), H5T_CSET_UTF8) << name;
      EXPECT_EQ(H5Sget_simple_extent_type(s.get()), H5S_SCALAR) << name;
    }
    for (const char* name : {"version", "step"}) {
      h5::Handle a = h5::attribute(H5Aopen(f.get(), name, H5P_DEFAULT));
      h5::Handle t = h5::type(H5Aget_type(a.get()));
      h5::Handle s = h5::space(H5Aget_space(a.get()));
      EXPECT_GT(H5Tequal(t.get(), H5T_STD_I64LE), 0) << name;
      EXPECT_EQ(H5Sget_simple_extent_type(s.get()), H5S_SCALAR) << name;
    }
    h5::Handle d = h5::dataset(H5Dopen2(f.get(), "/params/embed/weight", H5P_DEFAULT));
    h5::Handle t = h5::type(H5Dget_type(d.get()));
    EXPECT_GT(H5Tequal(t.get(), H5T_IEEE_F32LE), 0);
  }
}

TEST_F(CheckpointFiles, MissingMomentsAreWrittenAsZeros) {
  CheckpointData data;
  data.config = "[model]\n";
  data.step = 3;
  data.params["a/b/c"] = Tensor{2, 3};
  data.params["a/b/c"].fill(1.5f);
  data.params["d"] = Tensor{4};
  write_checkpoint(path("zeros.h5"), data);
  const CheckpointData back = read_checkpoint(path("zeros.h5"));
  EXPECT_EQ(shapes_of(back.exp_avg), shapes_of(data.params));
  EXPECT_EQ(shapes_of(back.exp_avg_sq), shapes_of(data.params));
  EXPECT_TRUE(all_zero(back.exp_avg));
  EXPECT_TRUE(all_zero(back.exp_avg_sq));
  EXPECT_EQ(back.params.at("a/b/c")[5], 1.5f);
}

TEST_F(CheckpointFiles, FailedWritesLeaveNothingBehind) {
  CheckpointData data;
  data.params["w"] = Tensor{2, 2};
  data.exp_avg["w"] = Tensor{2, 3};  // wrong shape
  EXPECT_THROW(write_checkpoint(path("bad.h5"), data), std::runtime_error);
  data.exp_avg = {{"v", Tensor{2, 2}}};  // wrong name
  EXPECT_THROW(write_checkpoint(path("bad.h5"), data), std::runtime_error);
  data.exp_avg = {{"w", Tensor{2, 2}}, {"v", Tensor{2, 2}}};  // extra name
  EXPECT_THROW(write_checkpoint(path("bad.h5"), data), std::runtime_error);
  data.exp_avg.clear();
  data.params["w/under_a_dataset"] = Tensor{1};
  EXPECT_THROW(write_checkpoint(path("bad.h5"), data), std::runtime_error);
  EXPECT_TRUE(listing().empty());
  try {
    write_checkpoint(path("no-such-dir/step-00000001.h5"), CheckpointData{});
    ADD_FAILURE() << "wrote into a missing directory";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-dir/step-00000001.h5"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(listing().empty());
}

TEST_F(CheckpointFiles, RejectsFilesThatAreNotCheckpoints) {
  const std::string missing = path("missing.h5");
  EXPECT_NE(read_rejection(missing).find("does not exist"), std::string::npos);
  const std::string text = path("text.h5");
  std::ofstream(text) << "[model]\nd_model = 32\n";
  EXPECT_NE(read_rejection(text).find("not an HDF5 file"), std::string::npos);
  EXPECT_NE(read_rejection(text).find(text), std::string::npos);
  const std::string grads = kFixtures + "grads-step1.h5";
  EXPECT_NE(read_rejection(grads).find("no 'format' attribute"), std::string::npos);
  EXPECT_THROW(read_checkpoint_header(grads), UsageError);
  EXPECT_THROW(read_tensor_group(text, "/grads"), UsageError);
}

TEST_F(CheckpointFiles, RejectsTruncatedFiles) {
  const std::string source = kFixtures + "init.h5";
  const auto size = std::filesystem::file_size(source);
  for (uintmax_t keep : {uintmax_t{4}, uintmax_t{1000}, size / 2, size - 1}) {
    const std::string file = path("truncated-" + std::to_string(keep) + ".h5");
    std::filesystem::copy_file(source, file);
    std::filesystem::resize_file(file, keep);
    const std::string message = read_rejection(file);
    EXPECT_NE(message.find(file), std::string::npos) << keep << ": " << message;
  }
}

// A valid checkpoint, then `edit` applied to it with the HDF5 API.
template <class Edit>
std::string edited_checkpoint(const std::string& file, Edit edit) {
  CheckpointData data;
  data.params["w"] = Tensor{2};
  write_checkpoint(file, data);
  h5::QuietErrors quiet;
  h5::Handle f = h5::file(H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
  edit(f.get());
  f.reset();
  return read_rejection(file);
}

TEST_F(CheckpointFiles, RejectsWrongFormatVersionOrLayout) {
  auto rejection = [&](const char* name, auto edit) { return edited_checkpoint(path(name), edit); };
  EXPECT_NE(rejection("format.h5", [](hid_t f) { h5::write_string_attribute(f, "format", "x"); })
                .find("format 'x'"),
            std::string::npos);
  EXPECT_NE(rejection("version.h5", [](hid_t f) { h5::write_int64_attribute(f, "version", 2); })
                .find("version 2"),
            std::string::npos);
  EXPECT_NE(rejection("noversion.h5", [](hid_t f) { H5Adelete(f, "version"); }).find("version"),
            std::string::npos);
  EXPECT_NE(rejection("noconfig.h5", [](hid_t f) { H5Adelete(f, "config"); }).find("config"),
            std::string::npos);
  EXPECT_NE(rejection("nostep.h5", [](hid_t f) { H5Adelete(f, "step"); }).find("step"),
            std::string::npos);
  const std::string no_params =
      rejection("noparams.h5", [](hid_t f) { H5Ldelete(f, "params", H5P_DEFAULT); });
  EXPECT_NE(no_params.find("'/params'"), std::string::npos) << no_params;
  EXPECT_NE(no_params.find("noparams.h5"), std::string::npos) << no_params;
  EXPECT_EQ(rejection("fine.h5", [](hid_t) {}), "");
}

// Found by tests/fuzz/fuzz_checkpoint: a dataset declaring far more elements than the file holds
// (an empty chunked one of 2^40 floats reads back as fill values) made verify_checkpoint and the
// readers allocate all of it (std::bad_alloc, or memory exhausted). Now refused as damaged, and
// likewise extents whose element count overflows.
TEST_F(CheckpointFiles, RejectsDatasetsDeclaringMoreDataThanTheFileHolds) {
  auto declare = [](hsize_t rows, hsize_t columns) {
    return [=](hid_t f) {
      const hsize_t dims[2] = {rows, columns}, chunk[2] = {1, 1};
      h5::Handle space = h5::space(H5Screate_simple(2, dims, nullptr));
      h5::Handle create = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
      H5Pset_chunk(create.get(), 2, chunk);
      h5::dataset(H5Dcreate2(f, "params/huge", H5T_IEEE_F32LE, space.get(), H5P_DEFAULT,
                             create.get(), H5P_DEFAULT));
    };
  };
  const std::string file = path("huge.h5");
  const std::string message = edited_checkpoint(file, declare(hsize_t{1} << 40, 1));
  EXPECT_NE(message.find("/params/huge declares shape [1099511627776, 1] of 4-byte values but the "
                         "file holds 0 bytes of its data: the file is truncated or damaged"),
            std::string::npos)
      << message;
  const CheckpointCheck check = verify_checkpoint(file);
  EXPECT_FALSE(check.valid);
  EXPECT_NE(check.problem.find("/params/huge declares shape"), std::string::npos) << check.problem;
  EXPECT_THROW(read_checkpoint_shapes(file), UsageError);
  const std::string overflow =
      edited_checkpoint(path("overflow.h5"), declare(hsize_t{1} << 40, hsize_t{1} << 40));
  EXPECT_NE(overflow.find("declares shape [1099511627776, 1099511627776]"), std::string::npos)
      << overflow;
}

}  // namespace
}  // namespace hg
