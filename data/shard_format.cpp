#include "data/shard_format.h"

#include <cstdio>

namespace hg {

std::string shard_file_name(const std::string& split, int64_t shard) {
  char number[32];
  std::snprintf(number, sizeof(number), "%05lld", static_cast<long long>(shard));
  return split + "-" + number + ".h5";
}

int64_t parse_shard_file_name(const std::string& file_name, const std::string& split) {
  const std::string prefix = split + "-";
  const std::string suffix = ".h5";
  if (file_name.size() < prefix.size() + 5 + suffix.size()) return -1;
  if (file_name.compare(0, prefix.size(), prefix) != 0) return -1;
  if (file_name.compare(file_name.size() - suffix.size(), suffix.size(), suffix) != 0) return -1;
  std::string digits =
      file_name.substr(prefix.size(), file_name.size() - prefix.size() - suffix.size());
  if (digits.size() > 15) return -1;
  int64_t shard = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return -1;
    shard = shard * 10 + (c - '0');
  }
  return shard;
}

}  // namespace hg
