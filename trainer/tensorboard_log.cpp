#include "trainer/tensorboard_log.h"

#include <unistd.h>

#include <boost/crc.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "trainer/tensorboard_event.pb.h"

namespace hg {
namespace {

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// TFRecord lengths and checksums are little-endian on disk.
template <class T>
void append_le(std::string& out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

}  // namespace

uint32_t masked_crc32c(const void* data, size_t size) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(data, size);
  const uint32_t c = crc.checksum();
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

TensorBoardLog::TensorBoardLog(const std::string& dir) {
  std::filesystem::create_directories(dir);
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  path_ = (std::filesystem::path(dir) /
           ("events.out.tfevents." + std::to_string(static_cast<int64_t>(wall_time())) + "." +
            host + "." + std::to_string(getpid()) + ".hourglass"))
              .string();
  file_ = std::fopen(path_.c_str(), "wb");
  if (!file_) throw std::runtime_error("cannot create TensorBoard event file " + path_);
  hourglass::tensorboard::Event version;
  version.set_wall_time(wall_time());
  version.set_file_version("brain.Event:2");
  write_record(version.SerializeAsString());
  std::fflush(file_);
}

TensorBoardLog::~TensorBoardLog() {
  if (file_) std::fclose(file_);
}

void TensorBoardLog::write(int64_t step,
                           const std::vector<std::pair<std::string, double>>& scalars) {
  hourglass::tensorboard::Event event;
  event.set_wall_time(wall_time());
  event.set_step(step);
  for (const auto& [tag, value] : scalars) {
    hourglass::tensorboard::SummaryValue* v = event.mutable_summary()->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
  write_record(event.SerializeAsString());
  std::fflush(file_);
}

void TensorBoardLog::write_record(const std::string& event_bytes) {
  std::string record;
  const uint64_t length = event_bytes.size();
  append_le(record, length);
  append_le(record, masked_crc32c(record.data(), sizeof length));
  record += event_bytes;
  append_le(record, masked_crc32c(event_bytes.data(), event_bytes.size()));
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size())
    throw std::runtime_error("cannot write TensorBoard event file " + path_);
}

}  // namespace hg
