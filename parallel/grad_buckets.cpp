#include "parallel/grad_buckets.h"

#include <mpi.h>

#include <algorithm>
#include <stdexcept>

#include "core/shard.h"

namespace hg {
namespace {

// ZeRO-1's rank-major layout: piece(offset in replica r's block, tensor's device, tensor's shard
// start, length) for each tensor of the bucket in bucket order.
template <class Piece>
void each_piece(const std::vector<Tensor*>& tensors, int r, int count, Piece piece) {
  int64_t offset = 0;
  for (Tensor* t : tensors) {
    const ShardRange range = shard_range(t->numel(), r, count);
    piece(offset, t->device(), t->data() + range.begin, range.size());
    offset += range.size();
  }
}

}  // namespace

GradientBuckets::GradientBuckets(const std::vector<std::vector<NamedGradient>>& unit_grads,
                                 Communicator& dp_comm, int64_t bucket_bytes, bool sharded)
    : comm_(dp_comm), sharded_(sharded) {
  if (bucket_bytes <= 0) throw std::invalid_argument("gradient bucket size must be positive");
  // Walk the units in backward order; close a bucket once it holds bucket_bytes. A parameter is
  // never split: a bucket may exceed the size by one tensor (an embedding, say).
  GradientBucket open;
  int64_t open_bytes = 0;
  auto close = [&] {
    if (open.grads.empty()) return;
    int64_t numel = 0;
    for (const Tensor* g : open.grads) numel += g->numel();
    open.flat = Tensor({numel}, comm_.memory());
    if (sharded_) set_shard_counts(open);
    stats_.bytes += open_bytes;
    buckets_.push_back(std::move(open));
    open = GradientBucket{};
    open_bytes = 0;
  };
  for (int u = static_cast<int>(unit_grads.size()); u-- > 0;) {
    for (const NamedGradient& g : unit_grads[u]) {
      if (g.grad->device() != comm_.memory())
        throw std::invalid_argument("gradient " + g.name + " on " + device_name(g.grad->device()) +
                                    " for a data-parallel communicator over " +
                                    device_name(comm_.memory()) + " memory");
      open.grads.push_back(g.grad);
      if (sharded_ && !g.value) throw std::invalid_argument("ZeRO-1 buckets need " + g.name);
      open.values.push_back(g.value);
      open.names.push_back(g.name);
      open.ready_unit = u;
      open_bytes += g.grad->numel() * static_cast<int64_t>(sizeof(float));
      if (open_bytes >= bucket_bytes) close();
    }
  }
  close();
  stats_.buckets = static_cast<int>(buckets_.size());
}

void GradientBuckets::begin_step() {
  for (GradientBucket& b : buckets_) {
    if (!b.pending.done()) throw std::logic_error("gradient bucket still in flight at a new step");
    b.started = b.copied_back = false;
    b.started_at_unit = -1;
  }
  next_ = 0;
  const GradientSyncStats sizes{stats_.buckets, stats_.bytes};
  stats_ = sizes;
}

void GradientBuckets::set_shard_counts(GradientBucket& bucket) const {
  const int count = comm_.size();
  bucket.counts.assign(count, 0);
  bucket.displacements.assign(count, 0);
  for (int r = 0; r < count; ++r) {
    int64_t n = 0;
    each_piece(bucket.grads, r, count, [&](int64_t, Device, float*, int64_t len) { n += len; });
    bucket.counts[r] = static_cast<int>(n);
    if (r > 0) bucket.displacements[r] = bucket.displacements[r - 1] + bucket.counts[r - 1];
  }
  bucket.shard = Tensor({std::max(bucket.counts[comm_.rank()], 1)}, comm_.memory());
}

// flat (=) the replicas' pieces of `tensors`, rank-major; only_rank >= 0: that replica's only.
void GradientBuckets::pack_rank_major(GradientBucket& bucket, const std::vector<Tensor*>& tensors,
                                      int only_rank) {
  for (int r = 0; r < comm_.size(); ++r) {
    if (only_rank >= 0 && r != only_rank) continue;
    float* block = bucket.flat.data() + bucket.displacements[r];
    each_piece(tensors, r, comm_.size(), [&](int64_t offset, Device d, float* piece, int64_t len) {
      copy_on_device(d, block + offset, piece, len);
    });
  }
}

void GradientBuckets::start(GradientBucket& bucket) {
  if (sharded_) {
    pack_rank_major(bucket, bucket.grads, -1);
    bucket.pending = comm_.ireduce_scatter_sum(bucket.flat.data(), bucket.shard.data(),
                                               bucket.counts, "gradient bucket reduce-scatter");
    bucket.started = true;
    return;
  }
  float* out = bucket.flat.data();
  for (const Tensor* g : bucket.grads) {
    copy_on_device(g->device(), out, g->data(), g->numel());
    out += g->numel();
  }
  bucket.pending =
      comm_.iallreduce_sum(bucket.flat.data(), bucket.flat.numel(), "gradient bucket all-reduce");
  bucket.started = true;
}

void GradientBuckets::copy_back(GradientBucket& bucket) {
  bucket.copied_back = true;
  if (sharded_) {  // only this replica's shards hold the sum
    each_piece(bucket.grads, comm_.rank(), comm_.size(),
               [&](int64_t offset, Device d, float* piece, int64_t len) {
                 copy_on_device(d, piece, bucket.shard.data() + offset, len);
               });
    return;
  }
  const float* in = bucket.flat.data();
  for (Tensor* g : bucket.grads) {
    copy_on_device(g->device(), g->data(), in, g->numel());
    in += g->numel();
  }
}

void GradientBuckets::unit_done(int unit) {
  const double t0 = MPI_Wtime();
  // Units finish in descending order and buckets were filled in that order, so the ready ones
  // are a prefix of the rest.
  for (; next_ < buckets_.size() && buckets_[next_].ready_unit >= unit; ++next_) {
    start(buckets_[next_]);
    buckets_[next_].started_at_unit = unit;
    ++stats_.started_during_backward;
  }
  stats_.launch_seconds += MPI_Wtime() - t0;
  progress();
}

void GradientBuckets::progress() {
  const double t0 = MPI_Wtime();
  for (size_t b = 0; b < next_; ++b) {
    GradientBucket& bucket = buckets_[b];
    if (!bucket.copied_back && comm_.test(bucket.pending)) copy_back(bucket);
  }
  stats_.progress_seconds += MPI_Wtime() - t0;
}

void GradientBuckets::finish() {
  const double t0 = MPI_Wtime();
  for (; next_ < buckets_.size(); ++next_) start(buckets_[next_]);
  for (GradientBucket& bucket : buckets_) {
    if (bucket.copied_back) continue;
    comm_.wait(bucket.pending);
    copy_back(bucket);
  }
  stats_.exposed_seconds += MPI_Wtime() - t0;
}

void GradientBuckets::allgather_values() {
  if (!sharded_) return;
  // All buckets in flight at once, then unpacked in order: the gathers overlap one another.
  std::vector<Pending> gathers(buckets_.size());
  for (size_t b = 0; b < buckets_.size(); ++b) {
    GradientBucket& bucket = buckets_[b];
    pack_rank_major(bucket, bucket.values, comm_.rank());
    gathers[b] = comm_.iallgather(bucket.flat.data(), bucket.counts, bucket.displacements,
                                  "parameter shard all-gather");
  }
  for (size_t b = 0; b < buckets_.size(); ++b) {
    comm_.wait(gathers[b]);
    GradientBucket& bucket = buckets_[b];
    for (int r = 0; r < comm_.size(); ++r) {
      if (r == comm_.rank()) continue;
      const float* block = bucket.flat.data() + bucket.displacements[r];
      each_piece(bucket.values, r, comm_.size(),
                 [&](int64_t offset, Device d, float* piece, int64_t len) {
                   copy_on_device(d, piece, block + offset, len);
                 });
    }
  }
}

}  // namespace hg
