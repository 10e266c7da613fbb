// Running the real `hourglass` binary from tests (end-to-end CLI checks).
#pragma once
#include <string>

namespace hg::testing {

struct CommandResult {
  int exit_code = -1;  // the process's exit status (WEXITSTATUS), -1 if it did not exit normally
  std::string output;  // stdout and stderr, interleaved
};

// Runs `command` through /bin/sh with stderr merged into stdout.
CommandResult run_command(const std::string& command);

// Path of the built binary and of the source tree's files.
std::string hourglass_binary();
std::string source_path(const std::string& relative);

// A fresh empty directory under /tmp, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace hg::testing
