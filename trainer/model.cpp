#include "trainer/model.h"

#include <algorithm>
#include <utility>

#include "trainer/unit_recompute.h"

namespace hg {

StageModel::StageModel(const ModelConfig& model, int seq_len, int first_unit, int last_unit,
                       const TensorParallel& tp, bool recompute_blocks)
    : model_(model), seq_len_(seq_len), plans_(plan_units(model, seq_len)), first_(first_unit),
      last_(last_unit < 0 ? static_cast<int>(plans_.size()) : last_unit) {
  params_.set_tensor_parallel(tp);
  // One unit at a time, to record which parameters each registers.
  Unit* first_block = nullptr;  // recompute: the blocks share its pool of released caches
  for (int u = first_; u < last_; ++u) {
    const size_t before = params_.registration_order().size();
    auto built = build_units(model_, seq_len_, plans_, u, u + 1, params_);
    if (recompute_blocks && plans_[u].kind == UnitKind::Block) {
      if (first_block)
        built.at(0)->share_released_caches_with(*first_block);
      else
        first_block = built.at(0).get();
      built.at(0) = std::make_unique<RecomputeUnit>(std::move(built.at(0)));
    }
    units_.push_back(std::move(built.at(0)));
    const auto& order = params_.registration_order();
    unit_params_.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(before), order.end());
  }
}

void StageModel::forward(Slot& slot, const Tensor& in, Tensor& out) {
  // Two buffers alternate as unit input and output; each unit copies what it keeps.
  Tensor a = in, b;
  for (size_t u = 0; u < units_.size(); ++u) {
    if (observer_) observer_(first_ + static_cast<int>(u), false, false);
    units_[u]->forward(slot, a, b);
    if (observer_) observer_(first_ + static_cast<int>(u), false, true);
    std::swap(a, b);
  }
  out = std::move(a);
}

void StageModel::backward(Slot& slot, const Tensor& dout, Tensor& din, const UnitDone& after_unit) {
  Tensor a = dout, b;
  for (size_t u = units_.size(); u-- > 0;) {
    if (observer_) observer_(first_ + static_cast<int>(u), true, false);
    units_[u]->backward(slot, a, b);
    if (observer_) observer_(first_ + static_cast<int>(u), true, true);
    if (after_unit) after_unit(static_cast<int>(u));
    std::swap(a, b);
  }
  din = std::move(a);
}

void StageModel::release(int64_t slot_id) {
  for (auto& unit : units_) unit->release(slot_id);
}

int64_t StageModel::live_slots() const {
  int64_t live = 0;
  for (const auto& unit : units_) live = std::max(live, unit->live_slots());
  return live;
}

}  // namespace hg
