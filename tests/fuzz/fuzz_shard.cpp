// libFuzzer harness: the token-shard reader (data/dataset.h, ARCHITECTURE.md §4) on shard files
// whose attributes and /tokens dataset the input chooses.
//
// The input does not become the file's bytes: it is decoded (FuzzedDataProvider) into one to
// three shards of split `train` that this harness writes with HDF5 itself (fuzz_hdf5.h): each
// root attribute absent, of the right type or of another (float, string, int of another width,
// an array), with fuzzed values; /tokens of a fuzzed class, width, rank, length and contents,
// contiguous or chunked with a large declared length. So every check the reader makes is
// reached, without fuzzing libhdf5's own parser (fuzz_file_bytes.cpp does that).
// Contract: TokenDataset and read() answer bad shards with UsageError, nothing else.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/shard_format.h"
#include "tests/fuzz/fuzz_hdf5.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

void write_shard(const std::string& path, FuzzedDataProvider& in, int index, int count) {
  hg::fuzz::File file(path);
  const hid_t root = file.get();
  hg::fuzz::string_attribute(root, "format", in, hg::kTokenFormat);
  hg::fuzz::int_attribute(root, "version", in, hg::kTokenFormatVersion);
  hg::fuzz::int_attribute(root, "vocab_size", in, 256);
  hg::fuzz::string_attribute(root, "split", in, "train");
  hg::fuzz::int_attribute(root, "shard", in, index);
  hg::fuzz::int_attribute(root, "num_shards", in, count);
  hg::fuzz::string_attribute(root, "sha256", in, "0123");
  hg::fuzz::string_attribute(root, "sources", in, "input.txt");
  hg::fuzz::int_attribute(root, "source_bytes", in, 100);
  if (in.ConsumeIntegralInRange(0, 7) > 0) hg::fuzz::fuzzed_dataset(root, hg::kTokenDataset, in);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const hg::fuzz::TemporaryDirectory dir;
  dir.clear();
  FuzzedDataProvider in(data, size);
  const int count = in.ConsumeIntegralInRange(1, 3);
  for (int i = 0; i < count; ++i) {
    // Mostly the names prep writes; sometimes a fuzzed one (a gap, another split, odd digits).
    const std::string name =
        in.ConsumeBool() ? hg::shard_file_name("train", i) : in.ConsumeRandomLengthString(24);
    if (name.empty() || name.find_first_of(std::string("/\0", 2)) != std::string::npos ||
        name == "." || name == "..")
      continue;
    write_shard(dir.path() + "/" + name, in, i, count);
  }
  hg::fuzz::expect_usage_errors([&] {
    hg::TokenDataset dataset(dir.path(), "train");
    const int64_t tokens = dataset.num_tokens();
    std::vector<int32_t> out(static_cast<size_t>(std::min<int64_t>(tokens, 4096)));
    dataset.read(0, static_cast<int64_t>(out.size()), out.data());
    const int64_t offset = in.ConsumeIntegralInRange<int64_t>(0, tokens - 1);
    const int64_t length = std::min<int64_t>(tokens - offset, 4096);
    dataset.read(offset, length, out.data());
    for (int64_t i = 0; i < length; ++i)
      if (out[i] < 0 || out[i] >= dataset.vocab_size())
        hg::fuzz::fail("read() returned token " + std::to_string(out[i]) + " outside vocab_size " +
                       std::to_string(dataset.vocab_size()));
  });
  return 0;
}
