// Generation throughput (issue 17): tokens/s of cached incremental decoding against the model
// re-run on the window for every token (`hourglass sample --no-cache`), and prefill time, on the
// reference model (bench/common.h ModelFlags: "2@1 4@3 2@1", d 256, L 768) at random init.
//
//   OMP_NUM_THREADS=1 bench_sample [--lengths 256,768,3072] [--prompt N] [--num-samples N]
//                                  [--uncached-tokens N] [--hierarchy ...] [--seq-len L] ...
//
// Every uncached token is one forward over a whole window of L tokens (padded past the context),
// so its rate does not depend on the generation length: it is measured over the first
// --uncached-tokens tokens (0: all of them) and used for every length. Cached generation past L
// tokens includes the window's restarts (a prefill of L/2 tokens every L/2 tokens). Numbers only,
// never pass/fail; one run on a shared machine is noisy.
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "bench/common.h"
#include "core/parallel_for.h"
#include "model/decoder.h"
#include "model/stage_model.h"
#include "trainer/config.h"
#include "trainer/sampling.h"
#include "trainer/train_step.h"

namespace {

using hg::bench::Clock;
using hg::bench::seconds_since;

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> values;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) values.push_back(std::stoi(item));
  return values;
}

// Tokens per second of `generate` for `length` tokens: per wall second, and per CPU second of the
// process (what survives other processes sharing the cores).
struct Rate {
  double wall = 0, cpu = 0;
};
Rate generation_rate(hg::StageModel& model, const std::vector<int32_t>& prompt, int length,
                     int num_samples, bool cache) {
  hg::SampleOptions o;
  o.length = length;
  o.num_samples = num_samples;
  o.cache = cache;
  const auto start = Clock::now();
  const double cpu_start = hg::bench::cpu_seconds();
  hg::generate(model, prompt, o);
  const double tokens = static_cast<double>(length) * num_samples;
  return {tokens / seconds_since(start), tokens / (hg::bench::cpu_seconds() - cpu_start)};
}

// Milliseconds of a decoder prefill of `count` tokens, and of one training forward (no backward)
// over the whole window, for comparison: best of `reps`.
void report_prefill(hg::StageModel& model, int count, int num_samples, int reps) {
  const int L = model.seq_len(), V = model.config().vocab_size;
  const auto tokens =
      hg::bench::random_tokens(static_cast<int64_t>(num_samples) * (L + 1), V, 2, 0);
  hg::Decoder decoder(model, num_samples);
  std::vector<int32_t> prompt(static_cast<size_t>(num_samples) * count);
  for (int n = 0; n < num_samples; ++n)
    for (int i = 0; i < count; ++i) prompt[n * count + i] = tokens[n * (L + 1) + i];
  double prefill = 1e30, forward = 1e30;
  hg::Tensor logits;
  for (int r = 0; r < reps; ++r) {
    decoder.reset();
    auto start = Clock::now();
    decoder.append(prompt.data(), count, logits);
    prefill = std::min(prefill, seconds_since(start));
    start = Clock::now();
    hg::evaluate_loss(model, {tokens.data(), num_samples, 0}, nullptr, &logits);
    forward = std::min(forward, seconds_since(start));
  }
  std::printf(
      "prefill of %d tokens: %.1f ms (%.0f tokens/s); a training forward over the window "
      "of %d: %.1f ms\n",
      count, 1e3 * prefill, num_samples * count / prefill, L, 1e3 * forward);
}

}  // namespace

int main(int argc, char** argv) {
  return hg::bench::run_main("bench_sample", [&] {
    hg::bench::Flags flags(argc, argv,
                           "bench_sample [--lengths 256,768,3072] [--prompt N] [--num-samples N] "
                           "[--uncached-tokens N] [--hierarchy H] [--d-model D] [--heads H] "
                           "[--ffn F] [--seq-len L] [--window W] [--chunk C]");
    const std::vector<int> lengths = parse_list(flags.text("--lengths", "256,768,3072"));
    const int prompt_length = flags.integer("--prompt", 16);
    const int num_samples = flags.integer("--num-samples", 1);
    const int uncached_tokens = flags.integer("--uncached-tokens", 256);
    hg::bench::ModelFlags model_flags;
    model_flags.read(flags);
    flags.done();
    hg::require(prompt_length >= 1 && num_samples >= 1 && uncached_tokens >= 0,
                "--prompt and --num-samples are at least 1, --uncached-tokens at least 0");
    const hg::Config config = hg::config_from_ini(model_flags.ini(1, 1));
    hg::StageModel model(config.model, config.train.seq_len);
    model.params().init_all(1);
    const int L = config.train.seq_len;
    std::printf("bench_sample: %s, %d threads, %d sample(s), prompt %d tokens, random init\n",
                model_flags.describe().c_str(), hg::num_threads(), num_samples, prompt_length);
    report_prefill(model, L / 2, num_samples, 3);
    report_prefill(model, L, num_samples, 3);

    const auto prompt = hg::bench::random_tokens(prompt_length, config.model.vocab_size, 3, 0);
    generation_rate(model, prompt, 8, num_samples, true);  // warm-up: workspaces, threads
    int longest = 0;
    for (int length : lengths) longest = std::max(longest, length);
    const int measured = uncached_tokens > 0 ? std::min(uncached_tokens, longest) : longest;
    const Rate uncached = generation_rate(model, prompt, measured, num_samples, false);
    std::printf(
        "uncached: %.1f tokens/s, %.1f per CPU s (measured over %d tokens; the same for "
        "every length)\n",
        uncached.wall, uncached.cpu, measured);
    for (int length : lengths) {
      const Rate cached = generation_rate(model, prompt, length, num_samples, true);
      std::printf(
          "length %5d: cached %7.1f tokens/s (%7.1f per CPU s), speed-up %6.1fx wall, "
          "%6.1fx CPU\n",
          length, cached.wall, cached.cpu, cached.wall / uncached.wall, cached.cpu / uncached.cpu);
    }
    return 0;
  });
}
