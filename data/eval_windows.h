// Evaluation windows of ARCHITECTURE.md §4: the split read as one stream of N tokens, window i is
// tokens [i·L, i·L + L] (both ends included, so consecutive windows share one token), for
// i < floor((N − 1) / L). The tail that fills no window is not scored.
#pragma once
#include <cstdint>

namespace hg {

class TokenDataset;

// floor((N − 1) / L), 0 when N < 2. Requires L >= 1 (std::invalid_argument).
int64_t eval_window_count(int64_t num_tokens, int seq_len);

// Window i into out[0 .. L + 1). std::out_of_range when i >= eval_window_count.
void read_eval_window(const TokenDataset& data, int seq_len, int64_t window, int32_t* out);

// Windows [first, first + count) into out [count, L + 1] with one read of count·L + 1 tokens.
void read_eval_windows(const TokenDataset& data, int seq_len, int64_t first, int64_t count,
                       int32_t* out);

}  // namespace hg
