// Tensor parallelism inside a pipeline stage (ARCHITECTURE.md §6, Megatron style): which part of
// each canonical tensor (§2) this rank holds, and the all-reduce that joins the partial outputs.
//
// Split by head: attn/{wq,wk,wv} and dconv_* by output column, attn/wo by input row,
// attn/norm_window and attn/norm_global by channel, attn/proj/weight and proj/bias by column
// h·r … h·r+r−1. Split by FFN hidden unit: ffn/w1 by column, ffn/b1 by element, ffn/w2 by row.
// Both split in nested bands (MatFormer, §1.5 and §9.6): every band [W_(j−1), W_j) between
// consecutive nested widths (of hidden units, or of heads) is split evenly: rank t holds
// W_(j−1) + t·b_j/tp … W_(j−1) + (t+1)·b_j/tp − 1 (b_j = W_j − W_(j−1)) of every band, stored
// band after band, so width W_j is the first Σ_(i≤j) b_i/tp local units on every rank (each rank
// does the same share of every width) and the canonical layout stays a plain prefix. Without
// nesting there is one band: heads t·H/tp … (t+1)·H/tp − 1, contiguous. Resampling attention is
// never nested. Everything else is replicated.
//
// A local tensor is its canonical tensor with one axis restricted to an index list (ParamSlice);
// init (Philox counter = canonical element index), checkpoints (canonical ↔ local) and the grad
// norm (sharded tensors summed over the group, replicated ones counted once) use that mapping.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "model/model_config.h"
#include "parallel/communicator.h"

namespace hg {

class ProcessGrid;

// This rank's place in its stage's tensor-parallel group.
struct TensorParallel {
  int rank = 0;
  int size = 1;
  // The group's all-reduces (tp_allreduce), the training traffic, on buffers in the model's
  // memory (comm->memory(): host-staged or NCCL off the CPU); unused when size = 1 (null in a
  // default TensorParallel).
  std::shared_ptr<Communicator> comm;
  // The same group as the grid's tp_comm(), for what moves host bytes outside the step: the
  // checkpoint's slice gathers (checkpoint/checkpoint.cpp, comm::gather). They stay on MPI
  // whatever carries `comm`, as the rest of setup and checkpoints do (communicator.h).
  MPI_Comm mpi_comm = MPI_COMM_NULL;
  // MatFormer granularities whose widths F/g (H/g) are band boundaries of the stack FFNs (stack
  // attentions): the trained ones (under train.matformer joint/sample), {1} otherwise.
  NestedGranularities nested;
  bool active() const { return size > 1; }
};

// This rank's group of `grid`, all-reducing through `comms.tp`, with the band boundaries at
// `nested` (trainer/config.h's trained_granularities).
TensorParallel make_tensor_parallel(const ProcessGrid& grid, const GridCommunicators& comms,
                                    const NestedGranularities& nested);

// data (=) Σ over the group of data, in place; no-op when size = 1. Time spent is added to the
// process-wide totals below (benchmarks): wall time, which includes waiting for the other ranks,
// and the calling thread's CPU time, which is the transfer and reduction work (plus the comm
// layer's short spin before it sleeps).
void tp_allreduce(const TensorParallel& tp, float* data, int64_t count);
double tp_allreduce_seconds();
double tp_allreduce_cpu_seconds();

// Which canonical indices along `axis` a local tensor holds (axis −1: replicated, the whole
// tensor).
struct ParamSlice {
  int axis = -1;
  std::vector<int64_t> index;  // canonical index of each local position along `axis`
  bool sharded() const { return axis >= 0; }
};

// Band boundaries of `total` nested units (hidden units F, or heads H) at `granularities`: the
// distinct widths total/g, ascending (last = total).
std::vector<int> nested_band_boundaries(int total, const std::vector<int>& granularities);
// Canonical units (hidden units or heads) of this rank, band after band (granularities {1}: one
// contiguous block).
std::vector<int64_t> nested_units(const TensorParallel& tp, int total,
                                  const std::vector<int>& granularities);
// Local active prefix for canonical width `width` (a band boundary when size > 1; any width when
// 1).
int local_nested_width(const TensorParallel& tp, int total, const std::vector<int>& granularities,
                       int width);
// Canonical columns of this rank's heads (nested_units of `heads`), `width` columns per head (e
// for channels, r for proj).
std::vector<int64_t> head_columns(const TensorParallel& tp, int heads, int width,
                                  const std::vector<int>& granularities = {1});
// Why `tp` ranks cannot split model `m` as above, or "": tp must divide model.ffn (the
// resampling FFNs run at it), model.heads (resampling attention) and every band of every stack FFN
// (stored width model.ffn, or each of model.ffn_widths) and stack attention (model.heads, or each
// of model.head_widths) at `nested` (trainer/config.h's trained_granularities). The reason reads
// after the tp that broke it, e.g. "parallel.tp = 3: " + reason, and says the fix. The run
// configuration (parallel.tp) and the planner (every tp it tries) share this rule.
std::string tensor_parallel_problem(const ModelConfig& m, const NestedGranularities& nested,
                                    int tp);

// The local shape of `canonical` under `slice`.
Shape local_shape(const Shape& canonical, const ParamSlice& slice);
// Canonical flat offset of local flat element `i`.
int64_t canonical_offset(const Shape& canonical, const ParamSlice& slice, int64_t i);
// local (=) the slice of `canonical` (local sized by local_shape).
void take_slice(float* local, const Tensor& canonical, const ParamSlice& slice);
// canonical's slice (=) local.
void put_slice(Tensor& canonical, const float* local, const ParamSlice& slice);

}  // namespace hg
