#include "model/unit_recompute.h"

#include <utility>

namespace hg {

RecomputeUnit::RecomputeUnit(std::unique_ptr<Unit> inner)
    : Unit(inner->name()), inner_(std::move(inner)) {}

void RecomputeUnit::forward(Slot& slot, const Tensor& in, Tensor& out) {
  inner_->forward(slot, in, out);
  // The input buffer belongs to the caller (StageModel alternates two): keep a copy.
  Tensor& kept = inputs_.acquire(slot.id).input;
  if (kept.shape() != in.shape() || kept.device() != in.device())
    kept = Tensor(in.shape(), in.device());
  device_memory(in.device()).copy(kept.data(), in.data(), sizeof(float) * in.numel());
  inner_->release(slot.id);
}

void RecomputeUnit::backward(Slot& slot, const Tensor& dout, Tensor& din) {
  inner_->forward(slot, inputs_.at(slot.id).input, recomputed_);
  inner_->backward(slot, dout, din);
  inputs_.release(slot.id);
}

void RecomputeUnit::release(int64_t slot_id) {
  inputs_.release(slot_id);
  inner_->release(slot_id);
}

}  // namespace hg
