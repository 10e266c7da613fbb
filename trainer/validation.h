// Validation during training (ARCHITECTURE.md §9.5; Megatron's eval_interval, llm.c's val loss):
// every eval.every steps the first eval.windows evaluation windows (§4) of eval.split are scored
// through the training layout's own stages, forward only (PipelineRuntime::evaluate), at full
// width and, in joint MatFormer mode, at every granularity.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "parallel/grid.h"
#include "trainer/config.h"
#include "trainer/pipeline_runtime.h"
#include "trainer/train_step.h"

namespace hg {

struct ValidationResult {
  double loss = 0;             // mean token loss at full width (nats)
  std::vector<double> losses;  // joint MatFormer: per sub-model (model.submodels()); else empty
  int64_t windows = 0;         // windows scored (over every replica)
  double seconds = 0;          // wall time of the evaluation
};

class Validation {
 public:
  // Not collective. The windows [0, M), M = min(eval.windows, windows in the split),
  // are shared out among the data-parallel replicas (replica r: [r·M/dp, (r+1)·M/dp)) and cut
  // into micro-batches of train.micro_batch windows; the first and last stages read their tokens
  // once, here (every rank opens the split, to count its windows). Throws UsageError (before any
  // compute) when the split is missing, does not fit model.vocab_size or holds no window. Does
  // nothing when eval.every = 0.
  Validation(const Config& config, const ProcessGrid& grid);
  Validation(const Validation&) = delete;  // batches_ point into tokens_
  Validation& operator=(const Validation&) = delete;

  // Whether update `step` (1-based) is scored: every eval.every-th and the last.
  bool due(int64_t step) const;
  // Collective: the scores on every rank.
  ValidationResult run(PipelineRuntime& runtime) const;
  int64_t windows() const { return total_windows_; }

 private:
  const Config& config_;
  const ProcessGrid& grid_;
  int64_t total_windows_ = 0;
  std::vector<int32_t> tokens_;      // this replica's windows, [count, L + 1] (first/last stage)
  std::vector<TokenBatch> batches_;  // into tokens_ (null tokens on the other stages)
  std::vector<int> granularities_;   // -1 (full width) first, then joint's other entries
};

}  // namespace hg
