// `hourglass train`: the whole run on any (dp, pp, tp) layout (tp = 1 for now).
#pragma once
#include <string>
#include <vector>

#include "core/error.h"

namespace hg {

// Exit codes of §8.
constexpr int kExitOk = 0, kExitUsage = 2, kExitFailure = 3, kExitStopped = 75;

// A UsageError that every rank raised together (setup): rank 0 prints it, all exit 2.
class CollectiveUsageError : public UsageError {
 public:
  using UsageError::UsageError;
};

// Runs `hourglass train` with the arguments after the subcommand; MPI must be initialised.
// Returns the process exit code; throws UsageError for bad input (the caller prints it on rank 0).
int train_main(const std::vector<std::string>& args);

}  // namespace hg
