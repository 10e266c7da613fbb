// Training runs of the real `hourglass` binary for end-to-end tests: the bundled corpus, a tiny
// three-stack model, a layout under mpirun, background processes to signal or kill, and what a
// run leaves behind (metrics, checkpoints).
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tests/support/run_command.h"

namespace hg::testing {

// The bundled corpus prepared by `hourglass prep`, once per test binary.
const std::string& corpus_dir();

// A tiny three-stack model ("1@1 1@2 1@1": pp 3 puts one stack on each stage) with dropout, so
// an exact resume needs the counter-based masks, on the bundled corpus; `overrides` replace keys
// (an empty value drops the key).
std::string model_args(int steps, const std::map<std::string, std::string>& overrides = {});

struct Layout {
  int dp, pp, tp;
  int ranks() const { return dp * pp * tp; }
  std::string args() const;  // " --parallel.dp D --parallel.pp P --parallel.tp T"
  std::string name() const;  // "(D,P,T)"
};

// `hourglass train` on `layout` under mpirun, to completion.
CommandResult train(const Layout& layout, const std::string& args);
// The shell command that train() runs (its shell execs mpirun: spawn it to signal the job).
std::string train_command(const Layout& layout, const std::string& args);

// Starts `command` under /bin/sh without waiting; the pid of the shell (or of what it execs).
pid_t spawn_shell(const std::string& command);
// Pids of the processes whose parent is `parent` and whose command name is `name`.
std::vector<pid_t> children_named(pid_t parent, const std::string& name);

// Waits for a spawned process: its exit code, -signal when a signal killed it, or -1000 when it
// was still running after `limit_seconds` (it and its `hourglass` children are then killed).
int wait_for_exit(pid_t pid, double limit_seconds);

std::string read_file(const std::string& path);
size_t line_count(const std::string& path);
// Loss of each step in a metrics file (the last line of a step wins: a resumed run appends the
// steps after its checkpoint again).
std::map<int64_t, double> losses(const std::string& metrics);
// Any numeric field of each step's metrics line ("loss", "grad_norm", ...), as for losses().
std::map<int64_t, double> metric(const std::string& metrics, const std::string& field);
// Bitwise: the same step, tensors, values and both AdamW moments.
void expect_same_checkpoints(const std::string& a, const std::string& b);

}  // namespace hg::testing
