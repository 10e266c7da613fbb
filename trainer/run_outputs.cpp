#include "trainer/run_outputs.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "checkpoint/checkpoint_io.h"
#include "checkpoint/checkpoint_store.h"
#include "core/error.h"

namespace hg {
namespace {

namespace fs = std::filesystem;

std::string setting(const std::string& key, const std::string& path) { return key + " = " + path; }

// Creates `dir` when missing and proves that a file can be created in it (permission bits
// alone say nothing for root, or on a read-only mount).
void require_writable_directory(const std::string& dir, const std::string& key) {
  std::error_code error;
  require(!fs::exists(dir, error) || fs::is_directory(dir, error),
          setting(key, dir) +
              " is a file, not a directory; give a directory (it is created "
              "when missing)");
  fs::create_directories(dir, error);
  require(!error, setting(key, dir) + ": cannot create it (" + error.message() +
                      "); give a directory this job can create");
  const std::string probe =
      (fs::path(dir) / (".hourglass-write-test-" + std::to_string(getpid()))).string();
  FILE* file = std::fopen(probe.c_str(), "w");
  require(file != nullptr, setting(key, dir) + ": cannot write in it (" + std::strerror(errno) +
                               "); give a writable directory");
  std::fclose(file);
  std::remove(probe.c_str());
}

// A file the run creates or appends to: its directory must take it, and an existing file must
// open for appending (the check appends nothing).
void require_writable_file(const std::string& path, const std::string& key) {
  std::error_code error;
  require(!fs::is_directory(path, error), setting(key, path) + " is a directory; give a file path");
  const fs::path parent = fs::path(path).parent_path();
  require_writable_directory(parent.empty() ? "." : parent.string(), key + " (its directory)");
  if (!fs::exists(path, error)) return;
  FILE* file = std::fopen(path.c_str(), "a");
  require(file != nullptr, setting(key, path) + ": cannot write it (" + std::strerror(errno) +
                               "); give a writable file");
  std::fclose(file);
}

// "key = a there, b here" for the first line where two identities differ.
std::string first_difference(const std::string& theirs, const std::string& ours) {
  std::istringstream a(theirs), b(ours);
  std::string x, y;
  while (std::getline(a, x) && std::getline(b, y))
    if (x != y) return x + " there, " + y + " here";
  return "their configurations differ";
}

}  // namespace

void check_output_paths(const Config& config, const std::string& checkpoint_dir) {
  require_writable_directory(checkpoint_dir, config.checkpoint.dir.empty()
                                                 ? "checkpoint.dir (run.dir/checkpoints)"
                                                 : "checkpoint.dir");
  if (config.log.metrics.empty() || config.checkpoint.dir.empty())
    require_writable_directory(config.run.dir, "run.dir");
  if (!config.log.metrics.empty()) require_writable_file(config.log.metrics, "log.metrics");
  if (!config.log.trace.empty()) require_writable_file(config.log.trace, "log.trace");
  if (!config.log.tensorboard.empty())
    require_writable_directory(config.log.tensorboard, "log.tensorboard");
}

std::string run_identity(const Config& config) {
  std::istringstream ini(config.to_ini());
  std::string line, section, identity;
  while (std::getline(ini, line)) {
    if (line.starts_with("["))
      section = line;
    else if (section == "[model]" && !line.empty())
      identity += "model." + line + "\n";
  }
  return identity + "train.seed = " + std::to_string(config.train.seed) + "\n";
}

void check_checkpoint_dir_owner(const Config& config, const std::string& dir,
                                const std::string& resume_file, int64_t start_step) {
  const std::string ours = run_identity(config);
  const std::string fix_other =
      "; give this run its own --checkpoint.dir (or --run.dir), or move those files away";
  for (const std::string& file : list_checkpoints(dir)) {
    CheckpointData header;
    try {
      header = read_checkpoint_header(file);
    } catch (const std::exception&) {
      continue;  // damaged: resume auto warns and skips it, pruning removes it in time
    }
    std::string theirs;
    try {
      theirs = run_identity(config_from_ini(header.config));
    } catch (const UsageError& e) {
      theirs = std::string("a configuration this version cannot read: ") + e.what();
    }
    require(theirs == ours, "checkpoint.dir = " + dir + " holds " + file + " of another run (" +
                                first_difference(theirs, ours) + ")" + fix_other);
    if (resume_file.empty())
      throw UsageError("checkpoint.dir = " + dir + " already holds this configuration's " + file +
                       ": a fresh run there would mix with it (pruning and `resume "
                       "auto` go by step). Continue it with --checkpoint.resume auto, or give a "
                       "fresh run its own --checkpoint.dir (or --run.dir)");
    // A later file that does not verify is no rival: `resume auto` skips it (and has already
    // done so when it chose `resume_file`), and this run overwrites it when it gets there.
    if (header.step <= start_step || config.checkpoint.resume == "auto" ||
        !verify_checkpoint(file).valid)
      continue;
    throw UsageError("checkpoint.dir = " + dir + " holds " + file + ", later than the step " +
                     std::to_string(start_step) + " this run resumes from (" + resume_file +
                     "): a requeued `resume auto` would go back to it" + fix_other);
  }
}

}  // namespace hg
