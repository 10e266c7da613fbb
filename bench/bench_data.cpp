// Data-loader throughput (issue 3): tokens/s of random training windows read from HDF5 shards,
// with 1 and 2 reader threads, next to what training consumes at the reference configuration.
//
//   bench_data [--mb N] [--seconds S] [--train-tokens-per-second R]
//
// Prepares N MB (default 96, enwik8-sized) of random bytes into 64 MiB shards in a temporary
// directory, then reads windows of seq_len + 1 = 769 tokens at offsets drawn by the §3 sampler,
// batch 8 per step. The shards sit in the OS page cache (just written), as they do after the
// first epoch of a real run; the first pass over a cold file system is bounded by the disk.
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/common.h"
#include "data/dataset.h"
#include "data/prep.h"
#include "data/sampler.h"

namespace fs = std::filesystem;

namespace {

using hg::bench::Clock;
using hg::bench::seconds_since;

constexpr int kSeqLen = 768;
constexpr int kBatch = 8;

// Random windows on `threads` threads sharing one dataset; returns tokens per second.
double random_window_rate(const hg::TokenDataset& data, int threads, double seconds) {
  std::atomic<int64_t> tokens{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::vector<int32_t> window(kSeqLen + 1);
      int64_t done = 0;
      for (int64_t step = 0; !stop.load(std::memory_order_relaxed); ++step) {
        for (int g = 0; g < kBatch; ++g) {
          int64_t offset = hg::sample_offset(1234 + t, step, g, data.num_tokens(), kSeqLen + 1);
          data.read(offset, kSeqLen + 1, window.data());
          done += kSeqLen + 1;
        }
      }
      tokens += done;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& w : workers) w.join();
  return static_cast<double>(tokens.load()) / seconds_since(start);
}

// Whole steps through the BatchLoader (one replica, micro-batch 2), prefetch off.
double loader_rate(const hg::TokenDataset& data, double seconds) {
  hg::BatchLoader loader(data, 7, kSeqLen, kBatch, 1, 0, 2, /*prefetch=*/false);
  auto start = Clock::now();
  int64_t steps = 0;
  while (seconds_since(start) < seconds) loader.load_step(steps++);
  return static_cast<double>(steps * kBatch * (kSeqLen + 1)) / seconds_since(start);
}

// Prepares the shards in a temporary directory, measures, removes the directory; exit code 3
// when something fails on the way.
int run(int64_t megabytes, double seconds, double training_rate) {
  std::string pattern = (fs::temp_directory_path() / "hg-bench-data-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) return 3;
  const fs::path dir = pattern;
  int code = 0;
  try {
    {
      std::mt19937_64 rng(1);
      std::ofstream out(dir / "input.bin", std::ios::binary);
      std::vector<uint64_t> block(1 << 17);
      for (int64_t written = 0; written < megabytes << 20; written += 1 << 20) {
        for (auto& word : block) word = rng();
        out.write(reinterpret_cast<const char*>(block.data()), 1 << 20);
      }
    }
    auto start = Clock::now();
    hg::prep_main(
        {"--input", (dir / "input.bin").string(), "--output", (dir / "ds").string(), "--quiet"});
    double prep_seconds = seconds_since(start);
    hg::TokenDataset data((dir / "ds").string(), "train");

    std::printf(
        "\ndata loader: %.1f M tokens of train in %d shards, random windows of seq_len + 1 = %d "
        "tokens, "
        "batch %d\n",
        static_cast<double>(data.num_tokens()) / 1e6, data.num_shards(), kSeqLen + 1, kBatch);
    std::printf("prep: %lld MB in %.2f s = %.0f MB/s\n", static_cast<long long>(megabytes),
                prep_seconds, static_cast<double>(megabytes << 20) / 1e6 / prep_seconds);
    std::printf(
        "training consumes %.0f tokens/s at the reference configuration (target: loader >= 50x)\n",
        training_rate);
    std::printf("%-30s %12s %12s\n", "reader", "tokens/s", "x training");
    random_window_rate(data, 1, 0.2);  // warm-up
    for (int threads : {1, 2}) {
      double rate = random_window_rate(data, threads, seconds);
      std::string label =
          "random windows, " + std::to_string(threads) + (threads == 1 ? " thread" : " threads");
      std::printf("%-30s %12.3g %11.0fx\n", label.c_str(), rate, rate / training_rate);
    }
    double rate = loader_rate(data, seconds);
    std::printf("%-30s %12.3g %11.0fx\n", "BatchLoader steps, 1 thread", rate,
                rate / training_rate);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_data: %s\n", e.what());
    code = 3;
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  return hg::bench::run_main("bench_data", [&] {
    hg::bench::Flags flags(argc, argv,
                           "bench_data [--mb N] [--seconds S] [--train-tokens-per-second R]");
    const int64_t megabytes = flags.integer64("--mb", 96);
    const double seconds = flags.number("--seconds", 2.0);
    // Tokens/s at the reference configuration (an estimate: pass a measured one).
    const double training_rate = flags.number("--train-tokens-per-second", 20000.0);
    flags.done();
    return run(megabytes, seconds, training_rate);
  });
}
