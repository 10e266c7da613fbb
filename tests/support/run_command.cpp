#include "tests/support/run_command.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace hg::testing {

CommandResult run_command(const std::string& command) {
  CommandResult result;
  std::string full = command + " 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + command);
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string without_mpi_environment() {
  // Keeps the test process's own Open MPI session directory (tests/support/test_main.cpp): jobs
  // of concurrent tests then never share a top directory.
  const char* session_base = getenv("OMPI_MCA_orte_tmpdir_base");
  std::string keep_session_base =
      session_base ? "export OMPI_MCA_orte_tmpdir_base='" + std::string(session_base) + "'; " : "";
  return "for v in $(env | sed -n "
         "'s/^\\(\\(OMPI\\|PMIX\\|ORTE\\|OPAL\\)[A-Za-z0-9_]*\\)=.*/\\1/p');"
         " do unset $v; done; " +
         keep_session_base;
}

std::string mpirun_prefix(int ranks) {
  return without_mpi_environment() +
         "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
         "OMP_NUM_THREADS=1 exec mpirun --oversubscribe --bind-to none -np " +
         std::to_string(ranks) + " ";
}

std::string tiny_model_flags(const std::map<std::string, std::string>& overrides) {
  std::map<std::string, std::string> keys = {
      {"model.d_model", "32"}, {"model.heads", "2"},   {"model.ffn", "64"},
      {"model.window", "8"},   {"model.chunk", "4"},   {"model.hierarchy", "'1@1 1@2 1@1'"},
      {"train.seq_len", "32"}, {"train.batch", "4"},   {"train.micro_batch", "2"},
      {"train.lr", "0.003"},   {"train.warmup", "10"}, {"log.every", "50"}};
  for (const auto& [k, v] : overrides) keys[k] = v;
  std::string flags;
  for (const auto& [k, v] : keys) flags += " --" + k + " " + v;
  return flags;
}

std::string hourglass_binary() { return std::string(HG_BINARY_DIR) + "/hourglass"; }
std::string source_path(const std::string& relative) {
  return std::string(HG_SOURCE_DIR) + "/" + relative;
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "hg-test-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace hg::testing
