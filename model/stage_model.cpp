#include "model/stage_model.h"

#include <algorithm>
#include <utility>

#include "model/unit_recompute.h"

namespace hg {

namespace {

std::vector<std::pair<int, int>> one_chunk(const std::vector<UnitPlan>& plans, int first,
                                           int last) {
  return {{first, last < 0 ? static_cast<int>(plans.size()) : last}};
}

}  // namespace

StageModel::StageModel(const ModelConfig& model, int seq_len, int first_unit, int last_unit,
                       const TensorParallel& tp, bool recompute_blocks, Backend& backend)
    : StageModel(model, seq_len, one_chunk(plan_units(model, seq_len), first_unit, last_unit), tp,
                 recompute_blocks, backend) {}

StageModel::StageModel(const ModelConfig& model, int seq_len,
                       const std::vector<std::pair<int, int>>& chunks, const TensorParallel& tp,
                       bool recompute_blocks, Backend& backend, std::pair<int, int> zero_shard)
    : model_(model),
      seq_len_(seq_len),
      plans_(plan_units(model, seq_len)),
      first_(chunks.at(0).first),
      last_(chunks.back().second),
      chunks_(chunks),
      params_(backend) {
  params_.set_tensor_parallel(tp);
  params_.set_data_parallel_shard(zero_shard.first, zero_shard.second);
  // One unit at a time, to record which parameters each registers.
  Unit* first_block = nullptr;  // recompute: the blocks share its pool of released caches
  chunk_begin_.push_back(0);
  for (const auto& [chunk_first, chunk_last] : chunks_) {
    for (int u = chunk_first; u < chunk_last; ++u) {
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
      global_unit_.push_back(u);
      const auto& order = params_.registration_order();
      unit_params_.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(before), order.end());
    }
    chunk_begin_.push_back(units_.size());
  }
}

void StageModel::forward(Slot& slot, const Tensor& in, Tensor& out, int chunk) {
  // Two buffers alternate as unit input and output; each unit copies what it keeps.
  Tensor a = in, b;
  for (size_t u = chunk_begin_.at(chunk); u < chunk_begin_.at(chunk + 1); ++u) {
    if (observer_) observer_(global_unit_[u], false, false);
    units_[u]->forward(slot, a, b);
    if (observer_) observer_(global_unit_[u], false, true);
    std::swap(a, b);
  }
  out = std::move(a);
}

void StageModel::backward(Slot& slot, const Tensor& dout, Tensor& din, const UnitDone& after_unit,
                          int chunk) {
  Tensor a = dout, b;
  for (size_t u = chunk_begin_.at(chunk + 1); u-- > chunk_begin_.at(chunk);) {
    if (observer_) observer_(global_unit_[u], true, false);
    units_[u]->backward(slot, a, b);
    if (observer_) observer_(global_unit_[u], true, true);
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
  for (size_t c = 0; c + 1 < chunk_begin_.size(); ++c) {
    int64_t in_chunk = 0;
    for (size_t u = chunk_begin_[c]; u < chunk_begin_[c + 1]; ++u)
      in_chunk = std::max(in_chunk, units_[u]->live_slots());
    live += in_chunk;
  }
  return live;
}

std::vector<std::vector<NamedGradient>> StageModel::unit_gradients() {
  std::vector<std::vector<NamedGradient>> grads(unit_params_.size());
  for (size_t u = 0; u < unit_params_.size(); ++u)
    for (const std::string& name : unit_params_[u])
      grads[u].push_back({name, &params_.at(name).grad, &params_.at(name).value});
  return grads;
}

}  // namespace hg
