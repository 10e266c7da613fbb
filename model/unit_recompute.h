// Activation recomputation (Megatron-LM's "full" recompute granularity; Chen et al. 2016's
// gradient checkpointing) for one unit: the forward keeps only the unit's input; the backward
// runs the forward again from it, then the backward. Memory between a micro-batch's forward and
// its backward drops from the unit's whole cache (attention scores, LayerNorm statistics, the
// FFN's hidden activations: ~10x the input for a block) to the input, for one more forward of
// compute (~1/3 more per block). The inner unit releases its cache right after each forward; the
// stage's recomputed blocks share one pool of released caches (Unit::share_released_caches_with),
// so together they hold the cache of the one block running, reused without allocation.
//
// The recomputed forward is the same computation on the same input: dropout masks are counter-
// based (§1.6: step, global sample, site, element) and tensor-parallel ranks recompute in the same
// order, so results are bit-identical to training without recomputation (tested).
#pragma once
#include <memory>

#include "model/unit.h"

namespace hg {

class RecomputeUnit : public Unit {
 public:
  explicit RecomputeUnit(std::unique_ptr<Unit> inner);

  // in [batch, n, d] -> out: the inner unit's forward; its cache is released, `in` kept.
  void forward(Slot& slot, const Tensor& in, Tensor& out) override;
  // Inner forward again from the kept input (its output discarded), then the inner backward.
  void backward(Slot& slot, const Tensor& dout, Tensor& din) override;
  void release(int64_t slot_id) override;
  int64_t live_slots() const override { return inputs_.live(); }

 private:
  struct Cache {
    Tensor input;  // [batch, n, d]
  };
  std::unique_ptr<Unit> inner_;
  SlotCaches<Cache> inputs_;
  Tensor recomputed_;  // the recomputed forward's output, not needed: reused buffer
};

}  // namespace hg
