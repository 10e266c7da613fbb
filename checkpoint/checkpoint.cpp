#include "checkpoint/checkpoint.h"

#include <mpi.h>

#include <sstream>
#include <stdexcept>
#include <vector>

#include "core/error.h"
#include "parallel/comm.h"

namespace hg {

namespace {

// Tensor-parallel export: every rank of the group walks the same (sorted) names; each sharded
// tensor's slices (value and both moments) and slice indices are gathered on rank 0 and put in
// place. Replicated tensors are taken from rank 0's copy.
void export_tensor_parallel(const ParamStore& store, CheckpointData& data, bool with_optimizer) {
  const TensorParallel& tp = store.tensor_parallel();
  const bool root = tp.rank == 0;
  for (const auto& [name, p] : store.all()) {
    if (!p.slice.sharded()) {
      if (!root) continue;
      data.params[name] = p.value.to(Device::Cpu);
      if (with_optimizer) {
        data.exp_avg[name] = p.exp_avg.to(Device::Cpu);
        data.exp_avg_sq[name] = p.exp_avg_sq.to(Device::Cpu);
      }
      continue;
    }
    // Every rank's slice has the same size (heads and bands split evenly).
    const int64_t n = p.value.numel();
    const int64_t along = static_cast<int64_t>(p.slice.index.size());
    std::vector<float> mine(3 * n);
    p.value.copy_to_host(mine.data());
    p.exp_avg.copy_to_host(mine.data() + n);
    p.exp_avg_sq.copy_to_host(mine.data() + 2 * n);
    std::vector<float> all(root ? 3 * n * tp.size : 0);
    std::vector<int64_t> indices(root ? along * tp.size : 0);
    comm::gather(mine.data(), sizeof(float) * 3 * n, all.data(), 0, tp.mpi_comm,
                 "gather tensor-parallel slices");
    comm::gather(p.slice.index.data(), sizeof(int64_t) * along, indices.data(), 0, tp.mpi_comm,
                 "gather tensor-parallel slice indices");
    if (!root) continue;
    Tensor value(p.canonical_shape), m(p.canonical_shape), v(p.canonical_shape);
    for (int r = 0; r < tp.size; ++r) {
      ParamSlice slice{p.slice.axis, std::vector<int64_t>(indices.begin() + r * along,
                                                          indices.begin() + (r + 1) * along)};
      const float* part = all.data() + 3 * n * r;
      put_slice(value, part, slice);
      put_slice(m, part + n, slice);
      put_slice(v, part + 2 * n, slice);
    }
    data.params[name] = std::move(value);
    if (with_optimizer) {
      data.exp_avg[name] = std::move(m);
      data.exp_avg_sq[name] = std::move(v);
    }
  }
}

// local (=) this rank's slice of the canonical host tensor `full`, wherever `local` lives.
void take_local_slice(Tensor& local, const Tensor& full, const ParamSlice& slice) {
  if (local.device() == Device::Cpu) {
    take_slice(local.data(), full, slice);
    return;
  }
  std::vector<float> host(static_cast<size_t>(local.numel()));
  take_slice(host.data(), full, slice);
  local.copy_from_host(host.data());
}

// moment (=) this rank's part of the canonical `full`: its tensor-parallel slice, and of that
// only its ZeRO-1 shard when the store's moments are sharded (model/params.h).
void take_moment(const Param& p, Tensor& moment, const Tensor& full) {
  if (!p.moments_sharded()) {
    take_local_slice(moment, full, p.slice);
    return;
  }
  Tensor local(p.value.shape());
  take_slice(local.data(), full, p.slice);
  copy_from_host(moment.device(), moment.data(), local.data() + p.shard_offset, p.shard_numel());
}

}  // namespace

void export_params(const ParamStore& store, CheckpointData& data, bool with_optimizer) {
  if (with_optimizer && store.shard_count() > 1)
    throw std::logic_error("export_params: ZeRO-1 sharded moments are not exported whole here "
                           "(checkpoint_store.cpp gathers them for a save)");
  if (store.tensor_parallel().active()) {
    export_tensor_parallel(store, data, with_optimizer);
    return;
  }
  for (const auto& [name, p] : store.all()) {
    data.params[name] = p.value.to(Device::Cpu);
    if (with_optimizer) {
      data.exp_avg[name] = p.exp_avg.to(Device::Cpu);
      data.exp_avg_sq[name] = p.exp_avg_sq.to(Device::Cpu);
    }
  }
}

void import_params(ParamStore& store, const CheckpointData& data, bool with_optimizer,
                   bool allow_extra, const std::string& source) {
  std::ostringstream problems;
  int count = 0;
  for (const auto& [name, p] : store.all()) {
    auto it = data.params.find(name);
    if (it == data.params.end()) {
      problems << "\n  missing " << name << " " << shape_string(p.canonical_shape);
      ++count;
    } else if (it->second.shape() != p.canonical_shape) {
      problems << "\n  " << name << ": checkpoint " << shape_string(it->second.shape())
               << ", model " << shape_string(p.canonical_shape);
      ++count;
    }
  }
  if (!allow_extra)
    for (const auto& [name, t] : data.params)
      if (!store.contains(name)) {
        problems << "\n  unexpected " << name << " " << shape_string(t.shape());
        ++count;
      }
  if (count)
    throw UsageError(source + " does not match the model configuration (" + std::to_string(count) +
                     " mismatched tensors):" + problems.str() +
                     "\nUse a checkpoint of this configuration, or build the configuration "
                     "stored in the checkpoint (`hourglass info` prints it).");
  for (auto& [name, p] : store.all()) {
    take_local_slice(p.value, data.params.at(name), p.slice);
    auto m = data.exp_avg.find(name), v = data.exp_avg_sq.find(name);
    if (with_optimizer && m != data.exp_avg.end() && v != data.exp_avg_sq.end()) {
      take_moment(p, p.exp_avg, m->second);
      take_moment(p, p.exp_avg_sq, v->second);
    } else {
      p.exp_avg.zero();
      p.exp_avg_sq.zero();
    }
  }
}

}  // namespace hg
