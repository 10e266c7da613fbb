// libFuzzer harness: the checkpoint reader (checkpoint/checkpoint_io.h, ARCHITECTURE.md §5) and
// what a load does with the file's config text, on checkpoints whose content the input chooses.
//
// The input is decoded (FuzzedDataProvider) into a checkpoint written as the trainer writes one
// (create_checkpoint_file, CheckpointAppender: real checksums) with fuzzed tensor names, shapes
// and values (NaN and Inf included), some tensors written raw instead (another type or rank, a
// declared extent far beyond the data, no or a fuzzed checksum), some root attributes replaced
// by fuzzed ones (fuzz_hdf5.h) and some groups removed. libhdf5's own parser is not fuzzed here
// (fuzz_file_bytes.cpp does that). Contract: verify_checkpoint never throws; the readers
// and config_from_ini answer a bad file with UsageError, nothing else.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/checkpoint_io.h"
#include "tests/fuzz/fuzz_hdf5.h"
#include "tests/fuzz/fuzz_support.h"
#include "trainer/config.h"

namespace {

// Mostly names a model has (so that the moments and parameters line up), sometimes any text.
std::string tensor_name(FuzzedDataProvider& in) {
  static const char* const names[] = {"embed/weight", "head/weight", "head/bias",
                                      "stacks/0/blocks/0/ln1/weight", "down/0/weight"};
  if (in.ConsumeIntegralInRange(0, 3) > 0)
    return names[in.ConsumeIntegralInRange<size_t>(0, std::size(names) - 1)];
  return in.ConsumeRandomLengthString(32);
}

// One tensor with its two moments, as the trainer writes them (checksummed).
void append_tensor(hg::CheckpointAppender& file, const std::string& name, FuzzedDataProvider& in) {
  hg::Shape shape(in.ConsumeIntegralInRange<size_t>(0, 3));
  for (int64_t& d : shape) d = in.ConsumeIntegralInRange<int64_t>(0, 6);
  std::vector<float> values[3];
  for (auto& v : values) {
    v.resize(static_cast<size_t>(hg::shape_numel(shape)));
    for (float& x : v) x = in.ConsumeBool() ? in.ConsumeFloatingPoint<float>() : 0.5f;
  }
  const float* pointers[3] = {values[0].data(), values[1].data(), values[2].data()};
  file.write_whole(name, shape, pointers);
}

void write_checkpoint_file(const std::string& path, FuzzedDataProvider& in) {
  const std::string config = in.ConsumeBool() ? in.ConsumeRandomLengthString(256)
                                              : std::string("[model]\nd_model = 8\nheads = 2\n");
  hg::create_checkpoint_file(path, config, in.ConsumeIntegral<int64_t>());
  {
    hg::CheckpointAppender file(path);
    for (int count = in.ConsumeIntegralInRange(0, 4); count > 0; --count) {
      const std::string name = tensor_name(in);
      try {
        append_tensor(file, name, in);
      } catch (const std::runtime_error&) {  // a name HDF5 cannot take: the writer's problem
      }
    }
    file.close();
  }
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  const char* groups[] = {"/params", "/optim/exp_avg", "/optim/exp_avg_sq"};
  for (int raw = in.ConsumeIntegralInRange(0, 2); raw > 0; --raw) {
    const std::string name = std::string(groups[in.ConsumeIntegralInRange(0, 2)]) + "/" +
                             in.ConsumeRandomLengthString(16);
    hg::fuzz::fuzzed_dataset(id, name.c_str(), in);
    if (in.ConsumeBool()) {
      const hid_t dataset = H5Dopen2(id, name.c_str(), H5P_DEFAULT);
      if (dataset >= 0) {
        hg::fuzz::int_attribute(dataset, "checksum", in, 0);
        H5Dclose(dataset);
      }
    }
  }
  if (in.ConsumeIntegralInRange(0, 3) == 0) {
    const char* victims[] = {"/params", "/optim", "/optim/exp_avg_sq"};
    H5Ldelete(id, victims[in.ConsumeIntegralInRange(0, 2)], H5P_DEFAULT);
  }
  if (in.ConsumeBool()) {  // one root attribute replaced by a fuzzed one (or removed)
    const char* names[] = {"format", "version", "config", "config_sha256", "step"};
    const int which = in.ConsumeIntegralInRange(0, 4);
    H5Adelete(id, names[which]);
    if (which == 1 || which == 4)
      hg::fuzz::int_attribute(id, names[which], in, 1);
    else
      hg::fuzz::string_attribute(id, names[which], in, "hourglass-checkpoint");
  }
  H5Fclose(id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const hg::fuzz::TemporaryDirectory dir;
  const std::string path = dir.path() + "/step-00000001.h5";
  FuzzedDataProvider in(data, size);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // the writer's own errors are not findings
  write_checkpoint_file(path, in);

  try {
    const hg::CheckpointCheck check = hg::verify_checkpoint(path);
    if (check.valid != check.problem.empty())
      hg::fuzz::fail("verify_checkpoint: valid = " + std::to_string(check.valid) +
                     " but problem = '" + check.problem + "'");
  } catch (const std::exception& e) {
    hg::fuzz::fail(std::string("verify_checkpoint threw: ") + e.what());
  }
  hg::fuzz::expect_usage_errors([&] {
    const hg::CheckpointData header = hg::read_checkpoint_header(path);
    hg::config_from_ini(header.config);  // what a load does next
  });
  hg::fuzz::expect_usage_errors([&] { hg::read_checkpoint_shapes(path); });
  hg::fuzz::expect_usage_errors([&] { hg::read_checkpoint(path, in.ConsumeBool()); });
  hg::fuzz::expect_usage_errors([&] {
    hg::read_checkpoint_tensors(path, {"embed/weight", "head/bias"}, true);
  });
  return 0;
}
