#include "parallel/grad_buckets.h"

#include <mpi.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace hg {

GradientBuckets::GradientBuckets(const std::vector<std::vector<NamedGradient>>& unit_grads,
                                 Communicator& dp_comm, int64_t bucket_bytes)
    : comm_(dp_comm) {
  if (bucket_bytes <= 0) throw std::invalid_argument("gradient bucket size must be positive");
  // Walk the units in backward order; close a bucket once it holds bucket_bytes. A parameter is
  // never split: a bucket may exceed the size by one tensor (an embedding, say).
  GradientBucket open;
  int64_t open_bytes = 0;
  auto close = [&] {
    if (open.grads.empty()) return;
    int64_t numel = 0;
    for (const Tensor* g : open.grads) numel += g->numel();
    open.flat.reset({numel});
    stats_.bytes += open_bytes;
    buckets_.push_back(std::move(open));
    open = GradientBucket{};
    open_bytes = 0;
  };
  for (int u = static_cast<int>(unit_grads.size()); u-- > 0;) {
    for (const NamedGradient& g : unit_grads[u]) {
      open.grads.push_back(g.grad);
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

void GradientBuckets::start(GradientBucket& bucket) {
  float* out = bucket.flat.data();
  for (const Tensor* g : bucket.grads) {
    std::memcpy(out, g->data(), sizeof(float) * g->numel());
    out += g->numel();
  }
  bucket.pending =
      comm_.iallreduce_sum(bucket.flat.data(), bucket.flat.numel(), "gradient bucket all-reduce");
  bucket.started = true;
}

void GradientBuckets::copy_back(GradientBucket& bucket) {
  const float* in = bucket.flat.data();
  for (Tensor* g : bucket.grads) {
    std::memcpy(g->data(), in, sizeof(float) * g->numel());
    in += g->numel();
  }
  bucket.copied_back = true;
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

}  // namespace hg
