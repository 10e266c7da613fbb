// A unit is one step of the model's forward order (§6): embed, a block, a stack's final
// LayerNorm, down/i, up/i, head. Pipeline stages are contiguous ranges of units, so a unit only
// sees its input activation and the micro-batch's Slot; everything it needs for backward it keeps
// in a per-slot cache, because under a pipeline schedule several micro-batches are in flight.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/model_config.h"

namespace hg {

// What is the same for every micro-batch of one step.
struct StepContext {
  int64_t step = 0;        // updates done before this one (keys dropout masks)
  uint64_t seed = 0;
  float dropout = 0.0f;    // model.dropout while training, 0 when evaluating
  float loss_scale = 0.0f; // dlogits multiplier: 1 / (B·L), the step's token count
};

// One micro-batch in flight (for MatFormer `joint`, one micro-batch at one width).
struct Slot {
  int64_t id = 0;                  // unique among the slots in flight on this rank
  const StepContext* ctx = nullptr;
  const int32_t* tokens = nullptr; // [batch, seq_len + 1]: read by embed (inputs) and head (targets)
  int64_t batch = 0;               // sequences in this micro-batch
  int64_t first_sample = 0;        // global sample index of sequence 0 (dropout masks, §1.6)
  const SubmodelWidths* widths = nullptr;  // MatFormer sub-model's active widths; null = full
  std::map<int, Tensor> skips;       // level i -> [batch, L/K_i, d]: produced by down/i, read by up/i
  std::map<int, Tensor> skip_grads;  // level i -> its gradient: produced by up/i, read by down/i
  double loss_sum = 0.0;             // head: Σ of this slot's token losses (nats)
  Tensor* logits = nullptr;          // head copies its logits [batch·L, V] here when set (eval, sampling)
};

class Unit {
 public:
  explicit Unit(std::string name) : name_(std::move(name)) {}
  virtual ~Unit() = default;
  const std::string& name() const { return name_; }

  // in [batch, n_in, d] -> out [batch, n_out, d]. Embed ignores `in` (reads slot.tokens); head
  // leaves `out` empty and adds to slot.loss_sum.
  virtual void forward(Slot& slot, const Tensor& in, Tensor& out) = 0;
  // dout like `out` -> din like `in` (=); parameter gradients accumulate. Frees the slot's cache.
  virtual void backward(Slot& slot, const Tensor& dout, Tensor& din) = 0;
  // Drops the slot's cache without a backward (evaluation).
  virtual void release(int64_t slot_id) = 0;
  // Slots whose cache is alive (the pipeline's activation count is asserted from this).
  virtual int64_t live_slots() const = 0;
  // Makes this unit take its caches from, and release them to, the same pool of released caches
  // as `other` (activation recomputation: the recomputed blocks of a stage hold one cache among
  // them, not one each). false when `other` is not of the same kind, or the unit has no cache.
  virtual bool share_released_caches_with(Unit& /*other*/) { return false; }

 private:
  std::string name_;
};

// Per-slot caches with reuse: a released cache goes to a free list and its Tensors keep their
// buffers, so steady-state training does not allocate.
template <class Cache>
class SlotCaches {
 public:
  Cache& acquire(int64_t id) {
    auto& slot = live_[id];
    if (!slot) {
      if (free_->empty()) {
        slot = std::make_unique<Cache>();
      } else {
        slot = std::move(free_->back());
        free_->pop_back();
      }
    }
    return *slot;
  }
  Cache& at(int64_t id) { return *live_.at(id); }
  void release(int64_t id) {
    auto it = live_.find(id);
    if (it == live_.end()) return;
    free_->push_back(std::move(it->second));
    live_.erase(it);
  }
  int64_t live() const { return static_cast<int64_t>(live_.size()); }
  // From now on, released caches go to (and acquire takes from) `other`'s pool.
  void share_released_with(SlotCaches& other) { free_ = other.free_; }

 private:
  std::map<int64_t, std::unique_ptr<Cache>> live_;
  using Pool = std::vector<std::unique_ptr<Cache>>;
  std::shared_ptr<Pool> free_ = std::make_shared<Pool>();  // released caches, kept for reuse
};

}  // namespace hg
