// One AdamW update of one tensor, PyTorch semantics (§3; the scalars and the per-element formula
// are in core/adamw_scalars.h, shared with layers/cuda/adamw.cu so both round alike).
#pragma once
#include <cstdint>

#include "core/adamw_scalars.h"

namespace hg {

// value, exp_avg, exp_avg_sq [n] updated in place from grad [n]; `decay` applies k.decay_factor
// (matrices only).
void adamw_step(float* value, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                const AdamWScalars& k, bool decay);

}  // namespace hg
