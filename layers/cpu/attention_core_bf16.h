// The blocked attention of attention_core.h at train.precision bf16 (ARCHITECTURE.md §9.1):
// attention_core_forward/backward call these when matmul_precision() is bf16.
#pragma once
#include <cstdint>
#include <functional>

#include "layers/attention_core.h"

namespace hg {

void attention_core_forward_bf16(int64_t slices,
                                 const std::function<AttentionForwardSlice(int64_t)>& slice,
                                 const AttentionPlan& plan, float scale, int e,
                                 AttentionCopies16* keep);
void attention_core_backward_bf16(int64_t slices,
                                  const std::function<AttentionBackwardSlice(int64_t)>& slice,
                                  const AttentionPlan& plan, float scale, int e,
                                  const AttentionCopies16* kept);

}  // namespace hg
