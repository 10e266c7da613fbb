// The parameters a rank holds, by canonical name (ARCHITECTURE.md §2), with their gradients and
// AdamW moments. Units register their tensors here when they are built; a pipeline stage builds
// only its own units, so its store holds only its own parameters.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "layers/backend.h"
#include "model/tensor_parallel.h"

namespace hg {

enum class ParamInit { Normal, Zero, One, DConvTaps };

struct Param {
  Tensor value;       // this rank's part: the canonical tensor, or its tensor-parallel slice
  Tensor grad;        // accumulated over the micro-batches of a step
  Tensor exp_avg;     // AdamW first moment [shard]: value's elements [shard_offset, +numel)
  Tensor exp_avg_sq;  // AdamW second moment [shard]
  // ZeRO-1: the moments, and what the optimizer updates, cover only this replica's shard of
  // `value` (core/shard.h); unsharded: offset 0 and the moments have value's shape.
  int64_t shard_offset = 0;
  // Set by the store under ZeRO-1, for every parameter: a replica's shard of a small tensor may be
  // all of it (one element over two replicas: one holds it, the other none), so the sizes cannot
  // tell.
  bool sharded = false;
  int64_t shard_numel() const { return exp_avg.numel(); }
  bool moments_sharded() const { return sharded; }
  ParamInit init = ParamInit::Zero;
  float init_std = 0.0f;
  bool decay = false;  // weight decay applies (matrices only, §3)
  Shape canonical_shape;  // the full tensor's shape (§2); = value.shape() unless sharded
  ParamSlice slice;       // which part of the canonical tensor `value` holds (tensor_parallel.h)
};

// Values, gradients and moments live in the memory of the backend the store is made with.
class ParamStore {
 public:
  explicit ParamStore(Backend& backend = cpu_backend()) : backend_(&backend) {}
  Backend& backend() const { return *backend_; }

  // Registers `name`, canonical shape `shape`, of which this rank holds `slice` (default: all
  // of it); value zero until init_all or a checkpoint fills it. Returns it. Pointers into the
  // Tensors stay valid: Params never move (std::map nodes).
  Param& add(const std::string& name, const Shape& shape, ParamInit init, float init_std = 0.0f,
             ParamSlice slice = {});
  Param& at(const std::string& name);
  const Param& at(const std::string& name) const;
  bool contains(const std::string& name) const { return params_.count(name) != 0; }

  // §1.6: a parameter's init is keyed by (seed, Init, hash(name), canonical element index), so
  // any layout, any subset of parameters and any tensor-parallel slice gets the same values.
  void init_all(uint64_t seed);
  void zero_grads();

  std::map<std::string, Param>& all() { return params_; }
  const std::map<std::string, Param>& all() const { return params_; }
  int64_t count_elements() const;  // held here (local slices)
  // Names in the order they were registered (units register in forward order).
  const std::vector<std::string>& registration_order() const { return order_; }

  // The tensor-parallel group the sharded parameters are split over (set before units register);
  // an active group's communicator must take buffers on the store's device.
  void set_tensor_parallel(TensorParallel tp) {
    if (tp.active() && tp.comm && tp.comm->memory() != backend_->device())
      throw std::logic_error(std::string("tensor-parallel communicator over ") +
                             device_name(tp.comm->memory()) + " memory for parameters on " +
                             device_name(backend_->device()));
    tp_ = std::move(tp);
  }
  const TensorParallel& tensor_parallel() const { return tp_; }

  // ZeRO-1: from now on each parameter's moments hold only replica `rank`'s shard of `count`
  // (core/shard.h); the registered ones keep that shard of their moments (1/count of the memory).
  // count 1 (the default) holds every moment whole.
  void set_data_parallel_shard(int rank, int count);
  int shard_rank() const { return shard_rank_; }
  int shard_count() const { return shard_count_; }

 private:
  std::map<std::string, Param> params_;
  std::vector<std::string> order_;
  TensorParallel tp_;
  int shard_rank_ = 0, shard_count_ = 1;
  Backend* backend_;
};

// Names that get weight decay and normal init: the matrices (§3).
bool is_matrix_name(const std::string& name);

}  // namespace hg
