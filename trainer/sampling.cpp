#include "trainer/sampling.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>

#include "core/error.h"
#include "core/random.h"
#include "model/decoder.h"
#include "trainer/train_step.h"

namespace hg {

namespace {

// The next token from one row of logits [V]: the most likely (temperature 0), or a draw with
// probabilities ∝ exp((logit − max)/T) among the top_k most likely, with the uniform `u`.
int32_t pick_token(const float* row, int V, const SampleOptions& o, double u) {
  std::vector<std::pair<float, int>> ranked(V);
  for (int v = 0; v < V; ++v) ranked[v] = {row[v], v};
  std::sort(ranked.begin(), ranked.end(), [](auto a, auto b) { return a.first > b.first; });
  int next = ranked[0].second;
  if (o.temperature > 0) {
    const int k = o.top_k > 0 ? std::min(o.top_k, V) : V;
    std::vector<double> p(k);
    double total = 0;
    for (int j = 0; j < k; ++j)
      total += p[j] = std::exp((ranked[j].first - ranked[0].first) / o.temperature);
    u *= total;
    for (int j = 0; j < k; ++j) {
      next = ranked[j].second;
      if ((u -= p[j]) <= 0) break;
    }
  }
  return next;
}

// The next-token logits [N, V] of N contexts of one length, by either path.
class NextLogits {
 public:
  NextLogits(StageModel& model, const SampleOptions& o)
      : model_(model),
        N_(o.num_samples),
        V_(model.config().vocab_size),
        L_(model.seq_len()),
        widths_(o.widths),
        next_(N_ * V_) {
    if (o.cache) decoder_ = std::make_unique<Decoder>(model, N_, widths_ ? &*widths_ : nullptr);
  }

  const float* operator()(const std::vector<std::vector<int32_t>>& context) {
    const int64_t length = static_cast<int64_t>(context[0].size());
    const int64_t start = window_start(length, start_, L_);
    if (start != start_ && decoder_) {
      decoder_->reset();  // a new window: prefill it from its first token
      fed_ = start;
    }
    start_ = start;
    return decoder_ ? cached(context, length) : uncached(context, length);
  }

 private:
  // The decoder takes the tokens it has not seen, [N, length − fed], in one append.
  const float* cached(const std::vector<std::vector<int32_t>>& context, int64_t length) {
    const int64_t count = length - fed_;
    std::vector<int32_t> tokens(N_ * count);
    for (int64_t n = 0; n < N_; ++n)
      std::copy(context[n].begin() + fed_, context[n].end(), tokens.begin() + n * count);
    decoder_->append(tokens.data(), count, logits_);
    const float* logits = host_logits();
    for (int64_t n = 0; n < N_; ++n)
      std::copy_n(logits + ((n + 1) * count - 1) * V_, V_, next_.begin() + n * V_);
    fed_ = length;
    return next_.data();
  }

  // The window, left-aligned in a training window of L + 1 tokens (causality makes the padding
  // after the context irrelevant to the logits read).
  const float* uncached(const std::vector<std::vector<int32_t>>& context, int64_t length) {
    const int64_t used = length - start_;
    std::vector<int32_t> windows(N_ * (L_ + 1), 0);
    for (int64_t n = 0; n < N_; ++n)
      std::copy(context[n].begin() + start_, context[n].end(), windows.begin() + n * (L_ + 1));
    evaluate_loss(model_, {windows.data(), N_, 0}, widths_ ? &*widths_ : nullptr, &logits_);
    const float* logits = host_logits();
    for (int64_t n = 0; n < N_; ++n)
      std::copy_n(logits + (n * L_ + used - 1) * V_, V_, next_.begin() + n * V_);
    return next_.data();
  }

  // logits_ where the host can read them: in place on the CPU, else copied from the device of a
  // model on a GPU (sample --device cuda), by either path.
  const float* host_logits() {
    if (logits_.device() == Device::Cpu) return logits_.data();
    host_logits_.resize(logits_.numel());
    logits_.copy_to_host(host_logits_.data());
    return host_logits_.data();
  }

  StageModel& model_;
  int64_t N_;
  int V_, L_;
  std::optional<SubmodelWidths> widths_;
  std::unique_ptr<Decoder> decoder_;
  int64_t start_ = 0;  // the window's first context index
  int64_t fed_ = 0;    // context tokens the decoder has seen (cached path)
  Tensor logits_;
  std::vector<float> host_logits_;  // logits_ copied from a device
  std::vector<float> next_;         // [N, V]
};

}  // namespace

int64_t window_start(int64_t length, int64_t start, int seq_len) {
  return length - start <= seq_len ? start : length - std::max(1, seq_len / 2);
}

std::vector<std::vector<int32_t>> generate(StageModel& model, const std::vector<int32_t>& prompt,
                                           const SampleOptions& o, const StepLogits& observe) {
  require(!prompt.empty() && o.num_samples >= 1 && o.length >= 0,
          "generate: needs a prompt of at least one token and at least one sample");
  const int V = model.config().vocab_size;
  const uint64_t key = random_key(o.seed, RandomPurpose::Generate);
  std::vector<std::vector<int32_t>> context(o.num_samples, prompt);
  NextLogits next_logits(model, o);
  for (int step = 0; step < o.length; ++step) {
    const float* logits = next_logits(context);
    if (observe) observe(step, logits);
    for (int n = 0; n < o.num_samples; ++n) {
      const double u = uniform_from_bits(
          philox4x32(key, counter_of(static_cast<uint64_t>(n), static_cast<uint64_t>(step)))[0]);
      context[n].push_back(pick_token(logits + static_cast<int64_t>(n) * V, V, o, u));
    }
  }
  for (auto& c : context) c.erase(c.begin(), c.begin() + static_cast<int64_t>(prompt.size()));
  return context;
}

}  // namespace hg
