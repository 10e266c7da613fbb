// One training step on the units this rank holds, without a pipeline: every micro-batch (and,
// for MatFormer `joint`, every width) forward and backward, then clipping and AdamW (§3, §1.5).
// The pipeline runtime replaces `accumulate_gradients` and reuses the rest.
#pragma once
#include <cstdint>
#include <vector>

#include "core/gemm.h"
#include "model/stage_model.h"
#include "trainer/config.h"

namespace hg {

// A micro-batch of token windows: [sequences, seq_len + 1], with its global position.
struct TokenBatch {
  const int32_t* tokens = nullptr;
  int64_t sequences = 0;
  int64_t first_sample = 0;
};

// The step context of update s+1: its dropout masks and the 1/(B·L) loss scale.
StepContext make_step_context(const Config& config, int64_t s);

// Which MatFormer sub-models (indices into model_config.h's submodel_widths) step s trains:
// off -> {-1} (full width), joint -> all, sample -> one drawn from (seed, s).
std::vector<int> step_granularities(const Config& config, int64_t s);

struct StepMetrics {
  int64_t step = 0;            // update number t (1-based)
  double loss = 0;             // mean over the step's tokens (joint: sum over widths)
  std::vector<double> losses;  // joint: per sub-model, in sub-model order
  double bpc = 0;              // full-width loss / ln 2
  double lr = 0;
  double grad_norm = 0;       // before clipping
  int granularity = -1;       // sample mode: the drawn sub-model's FFN granularity
  int head_granularity = -1;  // sample mode with nested heads: its head granularity
  int64_t tokens = 0;         // tokens trained on so far
  double seconds = 0;         // wall time of this update
};

// The bf16 copies of the store's weights for one step's forward and backward passes (core/gemm.h:
// made once, not per product); it must end before the optimizer writes the weights. Inert at fp32
// and for parameters on a GPU.
WeightCopiesScope step_weight_copies(const ParamStore& store);

// Forward + backward of every micro-batch and sub-model; gradients accumulate in the model's
// store (zeroed first). Returns Σ token losses per entry of `granularities` (sub-model indices
// into `widths`, -1 = full).
std::vector<double> accumulate_gradients(StageModel& model, const StepContext& ctx,
                                         const std::vector<TokenBatch>& micro_batches,
                                         const std::vector<int>& granularities,
                                         const std::vector<SubmodelWidths>& widths);

// Loss bookkeeping of §1.5: loss, losses, bpc from per-granularity loss sums.
void fill_step_losses(StepMetrics& metrics, const std::vector<double>& loss_sums,
                      const std::vector<int>& granularities, const ModelConfig& model,
                      double tokens_in_step);

// Clip and update with the global grad norm `norm` (already reduced over all ranks).
void apply_update(ParamStore& store, const TrainConfig& train, int64_t s, double norm,
                  StepMetrics& metrics);

// The whole single-process step s: what the fixtures' 5-step reference does.
StepMetrics train_step(StageModel& model, const Config& config, int64_t s,
                       const std::vector<TokenBatch>& micro_batches);

// Mean token loss of `batch` (no gradients), at the given sub-model widths (null = full).
double evaluate_loss(StageModel& model, const TokenBatch& batch, const SubmodelWidths* widths,
                     Tensor* logits = nullptr);

}  // namespace hg
