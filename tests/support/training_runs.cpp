#include "tests/support/training_runs.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "checkpoint/checkpoint_io.h"

namespace hg::testing {

const std::string& corpus_dir() {
  static TempDir dir;
  static std::string data = [] {
    std::string out = dir / "data";
    auto r = run_command(hourglass_binary() + " prep --input " +
                         source_path("data/corpus/common-licenses.txt") + " --output " + out);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return out;
  }();
  return data;
}

std::string model_args(int steps, const std::map<std::string, std::string>& overrides) {
  std::map<std::string, std::string> keys = {{"model.d_model", "32"},
                                             {"model.heads", "2"},
                                             {"model.ffn", "64"},
                                             {"model.hierarchy", "'1@1 1@2 1@1'"},
                                             {"model.window", "8"},
                                             {"model.chunk", "4"},
                                             {"model.dropout", "0.1"},
                                             {"train.seq_len", "32"},
                                             {"train.batch", "4"},
                                             {"train.micro_batch", "2"},
                                             {"train.lr", "0.003"},
                                             {"train.warmup", "3"},
                                             {"log.every", "1000"},
                                             {"data.dir", corpus_dir()},
                                             {"train.steps", std::to_string(steps)}};
  for (const auto& [k, v] : overrides) keys[k] = v;
  std::string args;
  for (const auto& [k, v] : keys)
    if (!v.empty()) args += " --" + k + " " + v;
  return args;
}

std::string Layout::args() const {
  return " --parallel.dp " + std::to_string(dp) + " --parallel.pp " + std::to_string(pp) +
         " --parallel.tp " + std::to_string(tp);
}

std::string Layout::name() const {
  return "(" + std::to_string(dp) + "," + std::to_string(pp) + "," + std::to_string(tp) + ")";
}

std::string train_command(const Layout& layout, const std::string& args) {
  return mpirun_prefix(layout.ranks()) + hourglass_binary() + " train" + layout.args() + args;
}

CommandResult train(const Layout& layout, const std::string& args) {
  return run_command(train_command(layout, args));
}

pid_t spawn_shell(const std::string& command) {
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

std::vector<pid_t> children_named(pid_t parent, const std::string& name) {
  std::vector<pid_t> found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string pid = entry.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string text;
    std::getline(stat, text);
    const size_t open = text.find('('), close = text.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::istringstream rest(text.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && text.substr(open + 1, close - open - 1) == name)
      found.push_back(std::stoi(pid));
  }
  return found;
}

int wait_for_exit(pid_t pid, double limit_seconds) {
  const auto start = std::chrono::steady_clock::now();
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >
        limit_seconds) {
      for (pid_t child : children_named(pid, "hourglass")) kill(child, SIGKILL);
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1000;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

size_t line_count(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  std::string line;
  while (std::getline(in, line)) ++n;
  return n;
}

std::map<int64_t, double> metric(const std::string& metrics, const std::string& field) {
  const std::string key = "\"" + field + "\": ";
  std::map<int64_t, double> by_step;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    const size_t s = line.find("\"step\": "), v = line.find(key);
    if (s == std::string::npos || v == std::string::npos) continue;
    by_step[std::stoll(line.substr(s + 8))] = std::stod(line.substr(v + key.size()));
  }
  return by_step;
}

std::map<int64_t, double> losses(const std::string& metrics) { return metric(metrics, "loss"); }

void expect_same_checkpoints(const std::string& a, const std::string& b) {
  const CheckpointData x = read_checkpoint(a), y = read_checkpoint(b);
  EXPECT_EQ(x.step, y.step);
  ASSERT_EQ(x.params.size(), y.params.size());
  for (const TensorMap CheckpointData::*group :
       {&CheckpointData::params, &CheckpointData::exp_avg, &CheckpointData::exp_avg_sq})
    for (const auto& [name, t] : x.*group) {
      const Tensor& u = (y.*group).at(name);
      ASSERT_EQ(t.shape(), u.shape()) << name;
      EXPECT_EQ(0, std::memcmp(t.data(), u.data(), sizeof(float) * t.numel())) << name;
    }
}

}  // namespace hg::testing
