#include "parallel/nccl_communicator.h"

#include <stdexcept>
#include <string>

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
    return pending(cuda::nccl_iall_reduce_sum(nccl_, data, count), what, -1);
  }
  Pending ireduce_scatter_sum(const float* data, float* shard, const std::vector<int>& counts,
                              const char* what) override {
    check_blocks(counts);
    displacements_.assign(counts.size(), 0);
    for (size_t r = 1; r < counts.size(); ++r)
      displacements_[r] = displacements_[r - 1] + counts[r - 1];
    return pending(cuda::nccl_ireduce_scatter_sum(nccl_, data, shard, counts.data(),
                                                  displacements_.data()),
                   what, -1);
  }
  Pending iallgather(float* data, const std::vector<int>& counts,
                     const std::vector<int>& displacements, const char* what) override {
    check_blocks(counts);
    return pending(cuda::nccl_iall_gather(nccl_, data, counts.data(), displacements.data()), what,
                   -1);
  }
  Pending isend(const float* data, int64_t count, int peer, int, const char* what) override {
    return pending(cuda::nccl_isend(nccl_, data, count, peer), what, peer);
  }
  Pending irecv(float* data, int64_t count, int peer, int, const char* what) override {
    return pending(cuda::nccl_irecv(nccl_, data, count, peer), what, peer);
  }

  bool test(Pending& pending) override {
    if (pending.event == nullptr) return true;
    if (cuda::nccl_event_done(pending.event)) {
      pending.event = nullptr;
      return true;
    }
    const std::string error = cuda::nccl_async_error(nccl_);
    if (!error.empty())
      throw std::runtime_error(std::string("NCCL ") + pending.request.what + ": " + error);
    return false;
  }
  bool wait(Pending& pending) override {
    return comm::wait_until(pending.request, [&] { return test(pending); },
                            [&] {
                              cuda::nccl_abort(nccl_);
                              nccl_ = nullptr;
                            });
  }

 private:
  // `request` only describes the op for the timeout message (communicator.h).
  Pending pending(cuda::NcclEvent event, const char* what, int peer) const {
    Pending p;
    p.request.comm = group_;
    p.request.what = what;
    p.request.peer = peer;
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

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(MPI_Comm group) {
  return std::make_shared<NcclCommunicator>(group);
}

}  // namespace hg
