// Constructors of the concrete units (one file each: unit_ends.cpp, unit_block.cpp,
// unit_resample.cpp); units.cpp calls them in forward order.
#pragma once
#include <memory>

#include "model/params.h"
#include "model/unit.h"
#include "model/units.h"
#include "model/model_config.h"

namespace hg {

std::unique_ptr<Unit> make_embed_unit(const ModelConfig& m, int seq_len, ParamStore& store);
std::unique_ptr<Unit> make_head_unit(const ModelConfig& m, int seq_len, ParamStore& store);
std::unique_ptr<Unit> make_block_unit(const ModelConfig& m, const UnitPlan& plan, ParamStore& store);
std::unique_ptr<Unit> make_stack_norm_unit(const ModelConfig& m, const UnitPlan& plan,
                                           ParamStore& store);
std::unique_ptr<Unit> make_down_unit(const ModelConfig& m, const UnitPlan& plan, ParamStore& store);
std::unique_ptr<Unit> make_up_unit(const ModelConfig& m, const UnitPlan& plan, ParamStore& store);

// The shortening factor k of level i: K_(i+1) / K_i.
int level_factor(const ModelConfig& m, int level);

}  // namespace hg
