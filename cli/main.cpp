// hourglass: one binary, subcommands (ARCHITECTURE.md §8). Exit codes: 0 finished; 2 bad usage,
// configuration or input (before any compute); 3 failure while running; 75 stopped early after a
// complete checkpoint.
#include <mpi.h>

#include <cstdio>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/host_memory.h"
#include "data/prep.h"
#include "plan/plan.h"
#include "trainer/config.h"
#include "trainer/inference.h"
#include "trainer/stop_signals.h"
#include "trainer/trainer.h"

namespace {

const char* kUsage =
    "usage: hourglass <command> [options]\n"
    "  prep     --input FILE... --output DIR [--format bytes|u16] [--vocab-size V]\n"
    "           [--valid-bytes N] [--test-bytes N] [--shard-bytes N] [--force]\n"
    "  info     DIR | CHECKPOINT\n"
    "  train    [--config FILE.ini] [--section.key value ...]   (under mpirun for pp/dp > 1)\n"
    "  eval     --checkpoint FILE --data DIR [--split valid|test] [--seq-len L]\n"
    "           [--max-windows N] [--ffn-widths W|W0,W1,...] [--json]\n"
    "  sample   --checkpoint FILE --prompt TEXT [--length N] [--temperature T] [--top-k K] [--seed S]\n"
    "           [--ffn-widths W|W0,W1,...] [--num-samples N] [--no-cache]\n"
    "  extract  --checkpoint FILE --ffn-widths W|W0,W1,... --output FILE\n"
    "  plan     [--config FILE.ini] [--section.key value ...] [--cluster FILE.ini]\n"
    "           [--cluster.key value ...] [--plan.key value ...] [--calibrate]   (docs/scaling.md)\n";

bool wants_help(const std::vector<std::string>& args) {
  for (const std::string& a : args)
    if (a == "--help" || a == "-h") return true;
  return false;
}

// `hourglass <command> --help`: the command's lines of the usage, and for train (and plan, which
// reads the same run configuration) every configuration key, for sample every option with its
// default. Exit 0; unknown commands exit 2.
int print_help(const std::string& command) {
  std::string lines;
  bool in_command = false;
  std::istringstream usage(kUsage);
  for (std::string line; std::getline(usage, line);) {
    const bool starts = line.rfind("  " + command + " ", 0) == 0;
    const bool continues = in_command && line.rfind("           ", 0) == 0;
    in_command = starts || continues;
    if (in_command) lines += line + "\n";
  }
  if (lines.empty()) {
    std::fprintf(stderr, "hourglass: unknown command '%s'\n%s", command.c_str(), kUsage);
    return hg::kExitUsage;
  }
  std::printf("usage: hourglass %s\n%s", command.c_str(), lines.c_str());
  if (command == "train" || command == "plan")
    std::printf("\nconfiguration keys (INI [section] key = value, or --section.key value):\n%s",
                hg::describe_configuration().c_str());
  if (command == "plan") std::printf("\nplanner keys:\n%s", hg::describe_plan_keys().c_str());
  if (command == "sample") std::printf("\n%s", hg::describe_sample_options().c_str());
  return hg::kExitOk;
}

int run_train(int argc, char** argv, const std::vector<std::string>& args) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int code = hg::kExitOk;
  try {
    code = hg::train_main(args);
  } catch (const hg::CollectiveUsageError& e) {
    if (rank == 0) std::fprintf(stderr, "hourglass train: error: %s\n", e.what());
    code = hg::kExitUsage;
  } catch (const hg::UsageError& e) {
    std::fprintf(stderr, "hourglass train: rank %d: error: %s\n", rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, hg::kExitUsage);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hourglass train: rank %d: failure: %s\n", rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, hg::kExitFailure);
  }
  MPI_Finalize();
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  hg::keep_freed_host_memory();  // each step's buffers are allocated again the next step
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? hg::kExitUsage : hg::kExitOk;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (command != "prep" && wants_help(args)) return print_help(command);  // prep has its own
  if (command == "train") {
    // Before MPI_Init and the first OpenMP region: every thread they create inherits the mask.
    hg::start_stop_signal_watcher();
    return run_train(argc, argv, args);
  }
  try {
    if (command == "prep") return hg::prep_main(args);
    if (command == "info") return hg::info_main(args);
    if (command == "eval") return hg::eval_main(args);
    if (command == "sample") return hg::sample_main(args);
    if (command == "extract") return hg::extract_main(args);
    if (command == "plan") return hg::plan_main(args);
    std::fprintf(stderr, "hourglass: unknown command '%s'\n%s", command.c_str(), kUsage);
    return hg::kExitUsage;
  } catch (const hg::UsageError& e) {
    std::fprintf(stderr, "hourglass %s: error: %s\n", command.c_str(), e.what());
    return hg::kExitUsage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hourglass %s: failure: %s\n", command.c_str(), e.what());
    return hg::kExitFailure;
  }
}
