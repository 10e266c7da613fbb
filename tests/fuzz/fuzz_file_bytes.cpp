// libFuzzer harness: the input's bytes as a file that hourglass reads, to fuzz what the
// structured harnesses leave out: libhdf5's parsing of a damaged file under our readers.
// Built twice: HG_FUZZ_SHARD (the bytes as data/train-00000.h5, opened by TokenDataset and read)
// and HG_FUZZ_CHECKPOINT (the bytes as a checkpoint: verify_checkpoint and the readers).
// libhdf5 is not instrumented, so coverage guidance stops at its API; a crash inside it is a
// libhdf5 bug (docs/DESIGN.md, fuzzing) that the project can only guard by checking what it can
// before handing the file over. Not run in CI for that reason: scripts/fuzz.sh --raw runs it.
#include <cstdint>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_support.h"
#if defined(HG_FUZZ_SHARD)
#include "data/dataset.h"
#else
#include "checkpoint/checkpoint_io.h"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const hg::fuzz::TemporaryDirectory dir;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
#if defined(HG_FUZZ_SHARD)
  hg::fuzz::write_file(dir.path() + "/train-00000.h5", bytes);
  hg::fuzz::expect_usage_errors([&] {
    hg::TokenDataset dataset(dir.path(), "train");
    std::vector<int32_t> out(static_cast<size_t>(std::min<int64_t>(dataset.num_tokens(), 4096)));
    dataset.read(0, static_cast<int64_t>(out.size()), out.data());
  });
#else
  const std::string path = dir.path() + "/step-00000001.h5";
  hg::fuzz::write_file(path, bytes);
  try {
    hg::verify_checkpoint(path);
  } catch (const std::exception& e) {
    hg::fuzz::fail(std::string("verify_checkpoint threw: ") + e.what());
  }
  hg::fuzz::expect_usage_errors([&] { hg::read_checkpoint(path, true); });
#endif
  return 0;
}
