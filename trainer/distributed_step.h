// One training update on any layout: the pipeline schedule over this rank's stage, the
// data-parallel gradient sum, the global grad-norm, the loss bookkeeping and AdamW. train_main
// and the layout-equivalence tests both call this.
#pragma once
#include <utility>
#include <vector>

#include "model/stage_model.h"
#include "data/sampler.h"
#include "parallel/grid.h"
#include "trainer/config.h"
#include "trainer/pipeline_runtime.h"
#include "trainer/train_step.h"

namespace hg {

// ZeRO-1 (parallel.zero 1): this rank's (replica, replicas), StageModel's zero_shard; else {0, 1}.
inline std::pair<int, int> zero_shard(const Config& config, const ProcessGrid& grid) {
  return config.parallel.zero == 1 ? std::pair{grid.dp_rank(), grid.dp()} : std::pair{0, 1};
}

// The micro-batches of this replica for one step, as the loader made them (`loaded`: first and
// last stage), or their sizes and global sample indices alone (stages that load nothing).
std::vector<TokenBatch> replica_micro_batches(const Config& config, int dp_rank,
                                              const std::vector<MicroBatch>& loaded);

struct DistributedStep {
  StepMetrics metrics;  // identical on every rank
  bool finite = true;   // false: loss or gradient not finite, no update was applied
  double bubble = 0;    // measured: 1 − Σ compute / (stages · slowest stage's step time)
};

DistributedStep distributed_step(StageModel& model, PipelineRuntime& runtime,
                                 const ProcessGrid& grid, const Config& config, int64_t s,
                                 const std::vector<TokenBatch>& micro_batches);

}  // namespace hg
