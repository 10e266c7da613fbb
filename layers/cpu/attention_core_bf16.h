// The blocked attention of attention_core.h at train.precision bf16 (ARCHITECTURE.md §9.1):
// attention_core_forward/backward call these when matmul_precision() is bf16.
#pragma once
#include <cstdint>
#include <functional>

#include "layers/attention_core.h"

namespace hg {

// Every slice's operands as bfloat16, rounded once per call (or kept by the forward for the
// backward: AttentionCopies16), per slice: keys and values [nk + ng, e] each (window rows first,
// then the global ones) and the queries that score the window keys and the global ones [nq, e]
// each; and in the backward the output gradient [nq, e] per slice, in a buffer of its own. The
// CPU attention layer writes the window ones itself at bf16 (attention.cpp).
struct SliceCopies {
  uint16_t* base = nullptr;
  uint16_t* dout_base = nullptr;
  int64_t nk = 0, ng = 0, nq = 0, per_slice = 0;
  int e = 0;
  uint16_t* k(int64_t s) const { return base + s * per_slice; }
  uint16_t* v(int64_t s) const { return k(s) + (nk + ng) * e; }
  uint16_t* k_global(int64_t s) const { return k(s) + nk * e; }
  uint16_t* v_global(int64_t s) const { return v(s) + nk * e; }
  uint16_t* q_window(int64_t s) const { return v(s) + (nk + ng) * e; }
  uint16_t* q_global(int64_t s) const { return q_window(s) + nq * e; }
  uint16_t* dout(int64_t s) const { return dout_base + s * nq * e; }
};

// The copies' sizes for a plan; base not yet set.
SliceCopies copies_layout(const AttentionPlan& plan, int e);

void attention_core_forward_bf16(int64_t slices,
                                 const std::function<AttentionForwardSlice(int64_t)>& slice,
                                 const AttentionPlan& plan, float scale, int e,
                                 AttentionCopies16* keep);
void attention_core_backward_bf16(int64_t slices,
                                  const std::function<AttentionBackwardSlice(int64_t)>& slice,
                                  const AttentionPlan& plan, float scale, int e,
                                  const AttentionCopies16* kept);

}  // namespace hg
