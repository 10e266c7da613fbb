// Constructors of the concrete units (one file each: unit_ends.cpp, unit_block.cpp,
// unit_resample.cpp); units.cpp calls them in forward order.
#pragma once
#include <memory>

#include "model/params.h"
#include "model/unit.h"
#include "model/units.h"
#include "model/model_config.h"
#include "model/tensor_parallel.h"

namespace hg {

std::unique_ptr<Unit> make_embed_unit(const ModelConfig& m, int seq_len, ParamStore& store);
std::unique_ptr<Unit> make_head_unit(const ModelConfig& m, int seq_len, ParamStore& store);
std::unique_ptr<Unit> make_block_unit(const ModelConfig& m, const UnitPlan& plan, ParamStore& store);
std::unique_ptr<Unit> make_stack_norm_unit(const ModelConfig& m, const UnitPlan& plan,
                                           ParamStore& store);
std::unique_ptr<Unit> make_down_unit(const ModelConfig& m, const UnitPlan& plan, ParamStore& store);
std::unique_ptr<Unit> make_up_unit(const ModelConfig& m, const UnitPlan& plan, ParamStore& store);

// The attention of stack block `global_block` (forward order): cfg.heads = cfg.stored_heads = the
// heads of it this rank holds (tensor parallelism splits them evenly); a MatFormer sub-model
// lowers cfg.heads to its active prefix.
AttentionConfig block_attention_config(const ModelConfig& m, const TensorParallel& tp,
                                       int global_block);

// The shortening factor k of level i: K_(i+1) / K_i.
int level_factor(const ModelConfig& m, int level);

}  // namespace hg
