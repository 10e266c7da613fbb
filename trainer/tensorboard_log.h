// log.tensorboard DIR (ARCHITECTURE.md §9.5): the training metrics as TensorBoard event files,
// written as training goes. Events are encoded by protobuf (trainer/tensorboard_event.proto, the
// field numbers of TensorBoard's own Event and Summary) and framed as TFRecords (length, masked
// CRC-32C of the length, the event, masked CRC-32C of the event; the CRCs by Boost.CRC), the
// format TensorBoard's reader expects. One file per run start, events.out.tfevents.<time>.<host>:
// TensorBoard merges a directory's files, so a resumed run appends a new one.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace hg {

class TensorBoardLog {
 public:
  // Creates `dir` when missing and a new event file in it, starting with the file-version event.
  // Throws std::runtime_error when the file cannot be created.
  explicit TensorBoardLog(const std::string& dir);
  ~TensorBoardLog();
  TensorBoardLog(const TensorBoardLog&) = delete;
  TensorBoardLog& operator=(const TensorBoardLog&) = delete;

  // One event at `step` holding every (tag, value) as a scalar; flushed at once.
  void write(int64_t step, const std::vector<std::pair<std::string, double>>& scalars);

  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& event_bytes);

  std::string path_;
  std::FILE* file_ = nullptr;
};

// TFRecord's checksum: CRC-32C (Castagnoli) rotated right by 15 plus 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t size);

}  // namespace hg
