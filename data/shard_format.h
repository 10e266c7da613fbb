// Names and constants of the token-shard format (ARCHITECTURE.md §4), shared by writer and reader.
#pragma once
#include <array>
#include <cstdint>
#include <string>

namespace hg {

inline constexpr const char* kTokenFormat = "hourglass-tokens";  // root attribute `format`
inline constexpr int64_t kTokenFormatVersion = 1;                // root attribute `version`
inline constexpr const char* kTokenDataset = "tokens";           // the 1-D dataset /tokens
inline constexpr std::array<const char*, 3> kSplits = {"train", "valid", "test"};

// "<split>-<NNNNN>.h5", the shard number zero-padded to at least five digits.
std::string shard_file_name(const std::string& split, int64_t shard);

// The shard number when `file_name` is "<split>-<digits>.h5" with at least five digits, else -1.
int64_t parse_shard_file_name(const std::string& file_name, const std::string& split);

}  // namespace hg
