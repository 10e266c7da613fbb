// Errors that reach the user. UsageError = bad configuration, command line, data or checkpoint:
// reported on rank 0 with what to do, exit code 2, before any compute (ARCHITECTURE.md §8).
#pragma once
#include <stdexcept>
#include <string>

namespace hg {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws UsageError(message) when `condition` is false.
inline void require(bool condition, const std::string& message) {
  if (!condition) throw UsageError(message);
}

}  // namespace hg
