// The single-process reference that layout-equivalence tests compare against: `steps` updates of
// train_step() on the whole model, on the deterministic tokens of random_tokens(.., token_seed +
// s).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "model/stage_model.h"
#include "trainer/config.h"
#include "trainer/train_step.h"

namespace hg::testing {

struct ReferenceRun {
  std::vector<StepMetrics> metrics;   // per step
  std::unique_ptr<StageModel> model;  // after the last step
};

// The global batch of step s: [batch, seq_len + 1] tokens.
std::vector<int32_t> step_tokens(const Config& config, int64_t s, uint64_t token_seed);

ReferenceRun single_process_run(const Config& config, int steps, uint64_t token_seed);

// single_process_run() computed once per process for every layout of one model, batch, step count
// and token seed (config.parallel does not take part).
const ReferenceRun& cached_single_process_run(const Config& config, int steps, uint64_t token_seed);

}  // namespace hg::testing
