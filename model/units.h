// The model's units (§6 forward order) and the plan that lists them for a configuration.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/params.h"
#include "model/unit.h"
#include "model/model_config.h"

namespace hg {

enum class UnitKind { Embed, Block, StackNorm, Down, Up, Head };

// One unit of the forward order, described without building it (pipeline partitioning,
// cost model, parameter listing).
struct UnitPlan {
  UnitKind kind;
  std::string name;     // canonical prefix: "embed", "stacks/1/blocks/0", "stacks/1/norm", "down/0", ...
  int stack = -1;       // stack index (Block, StackNorm), level (Down, Up), -1 otherwise
  int block = -1;       // block index within its stack (Block)
  int global_block = -1;  // stack-block index in forward order (Block): widths index
  int64_t rows = 0;     // sequence rows per sample at the unit's input
  int natural_stage = 0;  // the stage holding it when pp = number of stacks (§6)
  double flops = 0;       // forward+backward FLOPs per sample (cost model)
  double activation_bytes = 0;  // bytes cached per sample between forward and backward
  int64_t params = 0;
  // Of `flops`, the weight-gradient products (every linear's dW += Xᵀ·dY, as many FLOPs as its
  // forward product): zbh1's W (layers/weight_gradients.h); the rest of the backward is its B.
  double weight_flops = 0;
};

std::vector<UnitPlan> plan_units(const ModelConfig& model, int seq_len);
// train.matformer joint runs each micro-batch once per sub-model (§1.5, §9.6): sets every block's
// flops and weight_flops to their mean over the sub-models' widths, so G runs of a micro-batch
// cost what the G sub-models cost. Parameters stay the stored model's; activation bytes stay the
// full width's (an upper bound for the narrower runs).
void average_over_submodels(std::vector<UnitPlan>& plans, const ModelConfig& model);

// Builds the units of plans [first, last) and registers their parameters in `store`.
std::vector<std::unique_ptr<Unit>> build_units(const ModelConfig& model, int seq_len,
                                               const std::vector<UnitPlan>& plans, int first,
                                               int last, ParamStore& store);

}  // namespace hg
