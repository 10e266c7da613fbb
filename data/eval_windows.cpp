#include "data/eval_windows.h"

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace hg {

int64_t eval_window_count(int64_t num_tokens, int seq_len) {
  if (seq_len < 1) throw std::invalid_argument("eval_window_count: seq_len must be >= 1");
  return num_tokens < 2 ? 0 : (num_tokens - 1) / seq_len;
}

void read_eval_window(const TokenDataset& data, int seq_len, int64_t window, int32_t* out) {
  read_eval_windows(data, seq_len, window, 1, out);
}

void read_eval_windows(const TokenDataset& data, int seq_len, int64_t first, int64_t count,
                       int32_t* out) {
  const int64_t windows = eval_window_count(data.num_tokens(), seq_len);
  if (first < 0 || count < 0 || first > windows - count) {
    throw std::out_of_range("evaluation windows [" + std::to_string(first) + ", " +
                            std::to_string(first + count) + ") outside the " +
                            std::to_string(windows) + " windows of split '" + data.split() + "'");
  }
  if (count == 0) return;
  const int64_t L = seq_len;
  std::vector<int32_t> stream(static_cast<size_t>(count * L + 1));
  data.read(first * L, count * L + 1, stream.data());
  for (int64_t i = 0; i < count; ++i) {
    std::memcpy(out + i * (L + 1), stream.data() + i * L,
                static_cast<size_t>(L + 1) * sizeof(int32_t));
  }
}

}  // namespace hg
