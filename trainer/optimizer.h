// AdamW with PyTorch semantics, global grad-norm clipping and the warm-up + cosine schedule (§3).
#pragma once
#include <cstdint>

#include "model/params.h"
#include "trainer/config.h"

namespace hg {

// lr_s for update s+1 (s updates done before it).
double learning_rate(const TrainConfig& train, int64_t s);

// Each function below works on every parameter's shard (model/params.h: the whole tensor unless
// the store's moments are ZeRO-1 sharded; then the caller also sums the norm over the replicas).
// Σ g² over the store's gradients, in double, in the store's (sorted-name) order. Under tensor
// parallelism each canonical element must count once over the group: sharded tensors always
// count, replicated ones only on tensor-parallel rank 0; the caller sums the result over the group.
double grad_sum_squares(const ParamStore& store);

// Multiplies every gradient by grad_clip / (norm + 1e-6) when that is < 1 (grad_clip 0: never).
// Returns the factor applied (1 when none).
double clip_gradients(ParamStore& store, double norm, double grad_clip);

// Update number t = s + 1 with learning rate lr: decoupled decay on matrices, then Adam.
void adamw_update(ParamStore& store, const TrainConfig& train, int64_t t, double lr);

}  // namespace hg
