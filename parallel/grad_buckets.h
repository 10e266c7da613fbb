// Data-parallel gradient averaging that overlaps the backward pass (ARCHITECTURE.md §6; the
// reducer of PyTorch DDP and the gradient buffer of Megatron-LM).
//
// The stage's parameters are packed, in backward order (last unit first), into buckets of about
// `bucket_bytes`. A parameter's gradient is complete once the step's *final* backward op on this
// stage has passed its unit: earlier micro-batches only add to it. So during that final backward,
// as each unit finishes, every bucket whose units are all done is copied into its flat buffer and
// its non-blocking all-reduce (sum over the data-parallel Communicator) starts, while the backward
// of the units below it goes on. Between units the in-flight all-reduces are tested, which is what
// moves them forward (Open MPI progresses non-blocking collectives only inside MPI calls). finish()
// starts whatever is left, waits, and copies the sums back into the gradients.
//
// Why copies instead of gradients living in the bucket buffers: a Tensor owns its memory
// (core/tensor.h), and the copies cost two passes over the stage's gradients per step (27.5 MB
// each for the reference model: a few ms, under 0.5% of its ~1.1 s data-parallel step; they are
// counted in GradientSyncStats::launch_seconds and the exposed part). The flat buffers live on the
// parameters' device, which must be the Communicator's memory(): on run.device cuda NCCL reads
// them in place, or the host-staged communicator copies them through the host (docs/cuda.md).
//
// Every replica of a stage (same pipeline stage, same tensor-parallel rank) builds the same
// buckets from the same units, so the all-reduces are started in the same order everywhere, as
// MPI requires of collectives on one communicator. The sums are the same numbers the one-tensor-
// at-a-time all-reduce gave: with 2 replicas bit for bit; with more, up to the reduction order MPI
// picks for the message size.
//
// ZeRO-1 (parallel.zero 1, `sharded`): the same buckets, started at the same moments, but each is
// packed rank-major -- every parameter's shard-0 piece (core/shard.h), then every shard-1 piece,
// ... -- and reduce-scattered, so each replica receives only the sum of its own shards and
// copies it back into those elements of the gradients (the others keep this replica's unsummed
// part: only the shard is read by the optimizer). After the update, allgather_values() packs
// each replica's updated value shards the same way and all-gathers them in place, so every
// replica holds the full parameters before the next forward.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "parallel/communicator.h"

namespace hg {

// One parameter's gradient as the buckets see it: a name and the Tensor its backward accumulates
// into (model/params.h's Param::grad; parallel/ needs no more of the model than this).
struct NamedGradient {
  std::string name;
  Tensor* grad = nullptr;
  Tensor* value = nullptr;  // the parameter itself: ZeRO-1 all-gathers its updated shards
};

struct GradientBucket {
  std::vector<Tensor*> grads;  // backward order
  std::vector<Tensor*> values;  // ZeRO-1
  std::vector<std::string> names;
  int ready_unit = 0;  // complete once the final backward has finished this unit (a stage-local
                       // unit index: the smallest among its parameters' units)
  Tensor flat;         // [Σ numel] the gradients, copied when the bucket starts
  Pending pending;     // its all-reduce, once started
  bool started = false;
  int started_at_unit = -1;  // the unit whose unit_done started it; -1: started by finish()
  bool copied_back = false;
  // ZeRO-1: flat holds replica r's pieces at [displacements[r], + counts[r]); shard [counts[me]]
  // receives the reduce-scatter.
  std::vector<int> counts, displacements;
  Tensor shard;
};

struct GradientSyncStats {
  int buckets = 0;
  int64_t bytes = 0;
  int started_during_backward = 0;  // buckets whose all-reduce began before finish()
  double launch_seconds = 0;        // copying into buckets and starting their all-reduces
  double progress_seconds = 0;      // testing in-flight all-reduces between units
  double exposed_seconds = 0;       // finish(): what the backward did not hide (wait + copy back)
  double seconds() const { return launch_seconds + progress_seconds + exposed_seconds; }
};

class GradientBuckets {
 public:
  // unit_grads[u]: the gradients of the parameters stage-local unit u registered (written by u's
  // backward only), in registration order. bucket_bytes > 0. The Tensors and dp_comm are
  // borrowed.
  // sharded: ZeRO-1 (reduce-scatter; needs every NamedGradient's value).
  GradientBuckets(const std::vector<std::vector<NamedGradient>>& unit_grads, Communicator& dp_comm,
                  int64_t bucket_bytes, bool sharded = false);

  void begin_step();           // every bucket not started; stats zeroed
  void unit_done(int unit);    // the final backward finished stage-local `unit`
  void progress();             // tests the in-flight all-reduces; copies finished ones back
  void finish();               // starts the rest, waits for all, gradients hold the sums
  // ZeRO-1, after the update: every replica's value shards to all (blocking, with the timeout).
  void allgather_values();
  bool sharded() const { return sharded_; }

  const std::vector<GradientBucket>& buckets() const { return buckets_; }
  const GradientSyncStats& stats() const { return stats_; }

 private:
  void start(GradientBucket& bucket);
  void copy_back(GradientBucket& bucket);
  void pack_rank_major(GradientBucket& bucket, const std::vector<Tensor*>& tensors, int only_rank);
  void set_shard_counts(GradientBucket& bucket) const;
  std::vector<GradientBucket> buckets_;  // in start order
  size_t next_ = 0;                      // buckets_[0, next_) are started
  Communicator& comm_;                   // the data-parallel group
  bool sharded_ = false;
  GradientSyncStats stats_;
};

}  // namespace hg
