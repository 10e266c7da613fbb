// What the benchmark mains share: the MPI main wrapper (init, finalize, errors to exit code 2),
// `--flag value` options, wall and CPU clocks, the median, and random tokens. Header-only: every
// .cpp in bench/ is a benchmark of its own (bench/CMakeLists.txt).
#pragma once
#include <mpi.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/host_memory.h"
#include "core/random.h"

namespace hg::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// CPU seconds of this process (all threads), or of the calling thread with
// CLOCK_THREAD_CPUTIME_ID. At one thread per rank, wall time minus the time other processes held
// the core: a figure that survives a busy machine.
inline double cpu_seconds(clockid_t clock = CLOCK_PROCESS_CPUTIME_ID) {
  timespec t{};
  clock_gettime(clock, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Tokens [count] below `vocab`, from Philox keyed by `key_seed` at counters (counter_seed, i):
// the same on every rank and run, so layouts and repeats see the same data.
inline std::vector<int32_t> random_tokens(int64_t count, int vocab, uint64_t key_seed,
                                          uint64_t counter_seed) {
  std::vector<int32_t> tokens(static_cast<size_t>(count));
  const uint64_t key = random_key(key_seed, RandomPurpose::Sample);
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<int32_t>(philox4x32(key, counter_of(counter_seed, i))[0] % vocab);
  return tokens;
}

// A command line of `--flag value` pairs. Each flag is read by name with its default; done()
// then rejects a flag nothing read (a typo must not run the default configuration unnoticed):
//   Flags flags(argc, argv, "[--steps N] [--warmup N]");
//   const int steps = flags.integer("--steps", 3);
//   flags.done();
// Errors are UsageErrors that name the flag and end with the usage line.
class Flags {
 public:
  Flags(int argc, char** argv, std::string usage) : usage_(std::move(usage)) {
    for (int i = 1; i < argc; i += 2) {
      const std::string flag = argv[i];
      if (flag.rfind("--", 0) != 0) fail("expected a --flag, got '" + flag + "'");
      if (i + 1 >= argc) fail(flag + " needs a value");
      given_.push_back({flag, argv[i + 1]});
    }
    read_.assign(given_.size(), false);
  }

  // The flag's value (the last one when given twice), or `fallback`.
  std::string text(const std::string& flag, const std::string& fallback) {
    std::string value = fallback;
    for (size_t i = 0; i < given_.size(); ++i) {
      if (given_[i].first != flag) continue;
      value = given_[i].second;
      read_[i] = true;
    }
    return value;
  }

  int integer(const std::string& flag, int fallback) {
    return value_of(flag, fallback,
                    [](const std::string& s, size_t* end) { return std::stoi(s, end); });
  }

  int64_t integer64(const std::string& flag, int64_t fallback) {
    return value_of(flag, fallback,
                    [](const std::string& s, size_t* end) { return std::stoll(s, end); });
  }

  double number(const std::string& flag, double fallback) {
    return value_of(flag, fallback,
                    [](const std::string& s, size_t* end) { return std::stod(s, end); });
  }

  void done() const {
    for (size_t i = 0; i < given_.size(); ++i)
      if (!read_[i]) fail("unknown option " + given_[i].first);
  }

 private:
  template <class T, class Parse>
  T value_of(const std::string& flag, T fallback, Parse parse) {
    const std::string value = text(flag, "");
    if (value.empty()) return fallback;
    size_t end = 0;
    T x = fallback;
    try {
      x = static_cast<T>(parse(value, &end));
    } catch (const std::exception&) {
      end = 0;  // not a number, or out of range
    }
    if (end != value.size()) fail(flag + " " + value + ": not a number");
    return x;
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw UsageError(what + "\nusage: " + usage_);
  }

  std::string usage_;
  std::vector<std::pair<std::string, std::string>> given_;
  std::vector<bool> read_;
};

// The model options of the parallel-layout benchmarks (bench_pipeline, bench_parallel_layouts):
// the reference model unless the command line says otherwise, vocabulary 256.
struct ModelFlags {
  std::string hierarchy = "2@1 4@3 2@1";
  int d_model = 256, heads = 4, ffn = 1024, seq_len = 768, window = 128, chunk = 16;

  void read(Flags& flags) {
    hierarchy = flags.text("--hierarchy", hierarchy);
    d_model = flags.integer("--d-model", d_model);
    heads = flags.integer("--heads", heads);
    ffn = flags.integer("--ffn", ffn);
    seq_len = flags.integer("--seq-len", seq_len);
    window = flags.integer("--window", window);
    chunk = flags.integer("--chunk", chunk);
  }

  // The configuration file text: [model], then [train] with these batch sizes.
  std::string ini(int batch, int micro_batch) const {
    return "[model]\nvocab_size = 256\nd_model = " + std::to_string(d_model) +
           "\nheads = " + std::to_string(heads) + "\nffn = " + std::to_string(ffn) +
           "\nwindow = " + std::to_string(window) + "\nchunk = " + std::to_string(chunk) +
           "\nhierarchy = " + hierarchy + "\n[train]\nseq_len = " + std::to_string(seq_len) +
           "\nbatch = " + std::to_string(batch) + "\nmicro_batch = " + std::to_string(micro_batch) +
           "\n";
  }

  // For the first line of the output: hierarchy "2@1 4@3 2@1", d 256, heads 4, ..., chunk 16
  std::string describe() const {
    return "hierarchy \"" + hierarchy + "\", d " + std::to_string(d_model) + ", heads " +
           std::to_string(heads) + ", ffn " + std::to_string(ffn) + ", L " +
           std::to_string(seq_len) + ", window " + std::to_string(window) + ", chunk " +
           std::to_string(chunk);
  }
};

// The step options of the data-parallel benchmarks (bench_parallel_layouts, bench_zero): the
// global batch, its micro-batches, and how many steps are timed after how many warm-up steps.
struct StepFlags {
  int batch = 8, micro_batch = 2, steps = 3, warmup = 1;

  void read(Flags& flags) {
    batch = flags.integer("--batch", batch);
    micro_batch = flags.integer("--micro-batch", micro_batch);
    steps = flags.integer("--steps", steps);
    warmup = flags.integer("--warmup", warmup);
  }
};

// main() of a benchmark without MPI: body() returns the exit code; an exception is printed as
// "<name>: <what>" and the exit code is 2.
template <class Body>
int run_main(const char* name, Body&& body) {
  hg::keep_freed_host_memory();  // as the commands do: a step's buffers come back every step
  try {
    return body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 2;
  }
}

// main() of an MPI benchmark: MPI_Init_thread (MPI_THREAD_MULTIPLE, as the trainer asks for),
// body(rank, size), MPI_Finalize; exit code 0. A UsageError (options, number of ranks: the same
// on every rank) is printed once, by rank 0, and every rank exits with 2. Any other exception is
// printed with its rank and aborts the job with 2: the other ranks may wait in a collective.
template <class Body>
int run_mpi_main(int& argc, char**& argv, const char* name, Body&& body) {
  hg::keep_freed_host_memory();
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int code = 0;
  try {
    body(rank, size);
  } catch (const UsageError& e) {
    if (rank == 0) std::fprintf(stderr, "%s: %s\n", name, e.what());
    code = 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: rank %d: %s\n", name, rank, e.what());
    code = 2;
    MPI_Abort(MPI_COMM_WORLD, code);
  }
  MPI_Finalize();
  return code;
}

}  // namespace hg::bench
