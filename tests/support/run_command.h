// Running the real `hourglass` binary from tests (end-to-end CLI checks).
#pragma once
#include <map>
#include <string>

namespace hg::testing {

struct CommandResult {
  int exit_code = -1;  // the process's exit status (WEXITSTATUS), -1 if it did not exit normally
  std::string output;  // stdout and stderr, interleaved
};

// Runs `command` through /bin/sh with stderr merged into stdout.
CommandResult run_command(const std::string& command);

// The start of a shell command that runs the rest under `mpirun -np ranks` (oversubscribed,
// unbound, one OpenMP thread; the shell execs mpirun, so a spawned shell's pid is mpirun's). This
// process's OMPI_*, PMIX_* ... variables are dropped first: an MPI singleton's would make the child
// mpirun think it is itself a launched rank.
std::string mpirun_prefix(int ranks);
// The start of a shell command that drops those variables (e.g. before a single-process run
// that must be an MPI singleton of its own).
std::string without_mpi_environment();

// ` --key value` flags of a tiny model that trains in seconds; `overrides` replace or add keys.
std::string tiny_model_flags(const std::map<std::string, std::string>& overrides = {});

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
