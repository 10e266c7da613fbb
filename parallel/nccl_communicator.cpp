#include "parallel/nccl_communicator.h"

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "parallel/nccl_comm.h"

namespace hg {
namespace {

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(MPI_Comm group) : group_(group) {
    MPI_Comm_rank(group, &rank_);
    MPI_Comm_size(group, &size_);
    cuda::NcclId id{};
    if (rank_ == 0) id = cuda::nccl_unique_id();
    comm::broadcast(id.bytes, sizeof id.bytes, 0, group);
    nccl_ = cuda::nccl_init(id, size_, rank_);
  }
  ~NcclCommunicator() override {
    try {
      cuda::nccl_finalize(nccl_);
    } catch (const std::exception&) {  // a destructor does not throw; the job is ending anyway
    }
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "nccl"; }
  Device memory() const override { return Device::Cuda; }

  bool allreduce_sum(float* data, int64_t count, const char* what) override {
    Pending pending = iallreduce_sum(data, count, what);
    return wait(pending);
  }
  Pending iallreduce_sum(float* data, int64_t count, const char* what) override {
    return pending(cuda::nccl_iall_reduce_sum(live(), data, count), what, -1);
  }
  Pending ireduce_scatter_sum(const float* data, float* shard, const std::vector<int>& counts,
                              const char* what) override {
    check_blocks(counts);
    displacements_.assign(counts.size(), 0);
    for (size_t r = 1; r < counts.size(); ++r)
      displacements_[r] = displacements_[r - 1] + counts[r - 1];
    return pending(
        cuda::nccl_ireduce_scatter_sum(live(), data, shard, counts.data(), displacements_.data()),
        what, -1);
  }
  Pending iallgather(float* data, const std::vector<int>& counts,
                     const std::vector<int>& displacements, const char* what) override {
    check_blocks(counts);
    return pending(cuda::nccl_iall_gather(live(), data, counts.data(), displacements.data()), what,
                   -1);
  }
  Pending isend(const float* data, int64_t count, int peer, int tag, const char* what) override {
    return pending(cuda::nccl_isend(live(), data, count, peer), what, peer, tag, false);
  }
  Pending irecv(float* data, int64_t count, int peer, int tag, const char* what) override {
    return pending(cuda::nccl_irecv(live(), data, count, peer), what, peer, tag, true);
  }
  bool matches_in_order() const override { return true; }

  bool test(Pending& pending) override {
    if (pending.event == nullptr) return true;
    if (cuda::nccl_event_done(pending.event)) {
      pending.event = nullptr;
      return true;
    }
    const std::string error = cuda::nccl_async_error(live());
    if (!error.empty())
      throw std::runtime_error(std::string("NCCL ") + pending.request.what + ": " + error);
    return false;
  }
  bool wait(Pending& pending) override {
    // Past the timeout: the communicator is aborted (its later ops throw) and the op forgotten.
    return comm::wait_until(pending.request, [&] { return test(pending); },
                            [&] {
                              cuda::nccl_abort(nccl_);
                              nccl_ = nullptr;
                              cuda::nccl_event_release(pending.event);
                              pending.event = nullptr;
                            });
  }

 private:
  cuda::NcclComm* live() const {
    if (nccl_ == nullptr)
      throw std::runtime_error("NCCL communicator used after a timeout aborted it");
    return nccl_;
  }
  // `request` only describes the op for the timeout message (communicator.h); is_recv also says
  // which direction of a pipeline pair it went (NcclPipelineCommunicator).
  Pending pending(cuda::NcclEvent event, const char* what, int peer, int tag = -1,
                  bool is_recv = false) const {
    Pending p;
    p.request.comm = group_;
    p.request.what = what;
    p.request.peer = peer;
    p.request.tag = tag;
    p.request.is_recv = is_recv;
    p.event = event;
    return p;
  }
  void check_blocks(const std::vector<int>& counts) const {
    if (static_cast<int>(counts.size()) != size_)
      throw std::invalid_argument("NCCL: " + std::to_string(counts.size()) + " blocks for " +
                                  std::to_string(size_) + " ranks");
  }

  MPI_Comm group_;  // borrowed
  int rank_ = 0, size_ = 1;
  cuda::NcclComm* nccl_ = nullptr;
  std::vector<int> displacements_;  // of the reduce-scatter being queued (read at the call)
};

// The pipeline group: per pair of members, a two-rank MPI communicator and on it two NCCL
// communicators, one per direction, each with its own stream. A direction carries one member's
// sends to the other in the order they are issued, and the receiver posts in that order
// (matches_in_order), so every send meets its receive; the two directions, and the pairs, never
// queue behind one another, as MPI's tagged messages do not.
class NcclPipelineCommunicator final : public Communicator {
 public:
  explicit NcclPipelineCommunicator(MPI_Comm group) {
    MPI_Comm_rank(group, &rank_);
    MPI_Comm_size(group, &size_);
    out_.resize(size_);
    in_.resize(size_);
    pair_.assign(size_, MPI_COMM_NULL);
    // Every pair in the same order on every member (the splits are collective over the group);
    // within a pair, the lower member's direction first.
    for (int a = 0; a < size_; ++a)
      for (int b = a + 1; b < size_; ++b) {
        const bool member = rank_ == a || rank_ == b;
        MPI_Comm pair = comm::split(group, member ? 0 : MPI_UNDEFINED, rank_, "pipeline pair");
        if (!member) continue;
        const int peer = rank_ == a ? b : a;
        pair_[peer] = pair;
        auto lower_to_upper = std::make_unique<NcclCommunicator>(pair);
        auto upper_to_lower = std::make_unique<NcclCommunicator>(pair);
        out_[peer] = std::move(rank_ == a ? lower_to_upper : upper_to_lower);
        in_[peer] = std::move(rank_ == a ? upper_to_lower : lower_to_upper);
      }
  }
  ~NcclPipelineCommunicator() override {
    out_.clear();
    in_.clear();
    int finalized = 0;
    MPI_Finalized(&finalized);
    for (MPI_Comm& pair : pair_)
      if (pair != MPI_COMM_NULL && !finalized) MPI_Comm_free(&pair);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "nccl (pairwise)"; }
  Device memory() const override { return Device::Cuda; }
  bool matches_in_order() const override { return true; }

  bool allreduce_sum(float*, int64_t, const char*) override { collective(); }
  Pending iallreduce_sum(float*, int64_t, const char*) override { collective(); }
  Pending ireduce_scatter_sum(const float*, float*, const std::vector<int>&, const char*) override {
    collective();
  }
  Pending iallgather(float*, const std::vector<int>&, const std::vector<int>&,
                     const char*) override {
    collective();
  }
  // Peers are ranks of the group; in a pair the lower member is rank 0.
  Pending isend(const float* data, int64_t count, int peer, int tag, const char* what) override {
    return link(out_, peer).isend(data, count, peer > rank_ ? 1 : 0, tag, what);
  }
  Pending irecv(float* data, int64_t count, int peer, int tag, const char* what) override {
    return link(in_, peer).irecv(data, count, peer > rank_ ? 1 : 0, tag, what);
  }
  bool test(Pending& pending) override { return direction(pending).test(pending); }
  bool wait(Pending& pending) override { return direction(pending).wait(pending); }

 private:
  [[noreturn]] static void collective() {
    throw std::logic_error("the NCCL pipeline communicator carries sends and receives only");
  }
  NcclCommunicator& link(std::vector<std::unique_ptr<NcclCommunicator>>& links, int peer) {
    if (peer < 0 || peer >= size_ || peer == rank_ || !links[peer])
      throw std::invalid_argument("NCCL pipeline: no link to rank " + std::to_string(peer));
    return *links[peer];
  }
  // The direction an op went: its pair (request.comm) and whether it was a receive.
  NcclCommunicator& direction(const Pending& pending) {
    for (int peer = 0; peer < size_; ++peer)
      if (pair_[peer] == pending.request.comm && pair_[peer] != MPI_COMM_NULL)
        return link(pending.request.is_recv ? in_ : out_, peer);
    throw std::logic_error("NCCL pipeline: an op of another communicator");
  }

  int rank_ = 0, size_ = 1;
  std::vector<std::unique_ptr<NcclCommunicator>> out_, in_;  // by peer: my sends, my receives
  std::vector<MPI_Comm> pair_;                               // by peer, owned
};

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(MPI_Comm group) {
  return std::make_shared<NcclCommunicator>(group);
}

std::shared_ptr<Communicator> make_nccl_pipeline_communicator(MPI_Comm group) {
  return std::make_shared<NcclPipelineCommunicator>(group);
}

}  // namespace hg
