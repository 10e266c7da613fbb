// The units a rank holds (all of them on one process; a contiguous range under a pipeline; one
// range per chunk under the interleaved schedule), their parameters in one store, and the
// forward/backward over one chunk's range.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/params.h"
#include "parallel/grad_buckets.h"
#include "model/unit.h"
#include "model/units.h"
#include "model/model_config.h"

namespace hg {

class StageModel {
 public:
  // Units [first_unit, last_unit) of plan_units(model, seq_len); -1 = through the last. Under
  // tensor parallelism (tp.size > 1) the units hold this rank's slices and all-reduce over tp.comm:
  // every rank of the group must run the same forward/backward calls in the same order.
  // recompute_blocks: the stack blocks keep only their inputs between forward and backward and
  // recompute the rest (train.recompute = blocks; unit_recompute.h). Parameters, caches and
  // arithmetic are `backend`'s (layers/backend.h).
  StageModel(const ModelConfig& model, int seq_len, int first_unit = 0, int last_unit = -1,
             const TensorParallel& tp = {}, bool recompute_blocks = false,
             Backend& backend = cpu_backend());
  // Interleaved pipeline: chunk c holds units [chunks[c].first, chunks[c].second), ranges in
  // increasing unit order. Stage-local unit indices run through the chunks in order.
  // zero_shard: ZeRO-1's (replica, replicas) -- the moments are allocated for that shard only
  // (ParamStore::set_data_parallel_shard, before any unit registers); {0, 1}: whole moments.
  StageModel(const ModelConfig& model, int seq_len, const std::vector<std::pair<int, int>>& chunks,
             const TensorParallel& tp = {}, bool recompute_blocks = false,
             Backend& backend = cpu_backend(), std::pair<int, int> zero_shard = {0, 1});

  // Runs the held units of `chunk` in order. For the first unit (embed) `in` is ignored (tokens
  // come from the slot); after the last (head) `out` is left empty and slot.loss_sum is filled.
  void forward(Slot& slot, const Tensor& in, Tensor& out, int chunk = 0);
  // `after_unit` (optional) is called with the stage-local index of each unit whose backward
  // has finished, in descending order: the data-parallel gradient buckets start from it.
  using UnitDone = std::function<void(int local_unit)>;
  void backward(Slot& slot, const Tensor& dout, Tensor& din, const UnitDone& after_unit = {},
                int chunk = 0);
  void release(int64_t slot_id);  // evaluation: drop caches without backward

  // Optional hook for per-unit timing (benchmarks): when set, called just before
  // (finished = false) and just after (true) every unit's forward or backward, with the unit's
  // index into plans().
  using UnitObserver = std::function<void(int unit, bool backward, bool finished)>;
  void set_unit_observer(UnitObserver observer) { observer_ = std::move(observer); }

  ParamStore& params() { return params_; }
  const ParamStore& params() const { return params_; }
  const std::vector<UnitPlan>& plans() const { return plans_; }
  // unit_params()[u]: the parameters stage-local unit u registered (u = 0 is first_unit()).
  const std::vector<std::vector<std::string>>& unit_params() const { return unit_params_; }
  // The same as gradients, for the data-parallel buckets (parallel/grad_buckets.h).
  std::vector<std::vector<NamedGradient>> unit_gradients();
  int first_unit() const { return first_; }  // of chunk 0
  int last_unit() const { return last_; }    // end of the last chunk
  int chunks() const { return static_cast<int>(chunks_.size()); }
  // (micro-batch, chunk) pairs whose activations are alive: per chunk the max over its units,
  // summed over the chunks (one chunk: the micro-batches alive).
  int64_t live_slots() const;
  const ModelConfig& config() const { return model_; }
  int seq_len() const { return seq_len_; }

 private:
  ModelConfig model_;
  int seq_len_;
  std::vector<UnitPlan> plans_;
  int first_, last_;
  std::vector<std::pair<int, int>> chunks_;  // global unit ranges
  std::vector<size_t> chunk_begin_;          // [chunks + 1] stage-local index of each's first
  std::vector<int> global_unit_;             // stage-local -> index into plans_
  ParamStore params_;
  std::vector<std::unique_ptr<Unit>> units_;
  std::vector<std::vector<std::string>> unit_params_;
  UnitObserver observer_;
};

}  // namespace hg
