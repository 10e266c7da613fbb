#include "parallel/communicator.h"

#include <stdexcept>

#include "parallel/grid.h"
#include "parallel/staged_communicator.h"
#ifdef HG_HAVE_CUDA
#include "parallel/nccl_communicator.h"
#endif

namespace hg {
namespace {

// Each op is the comm:: call it names: the same MPI calls as before the interface existed, and
// comm.h's timeout on every wait.
class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm) : comm_(comm) {
    // Local queries (no communication): cached, since the runtime asks per message.
    MPI_Comm_rank(comm, &rank_);
    MPI_Comm_size(comm, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "mpi"; }

  bool allreduce_sum(float* data, int64_t count, const char* what) override {
    Pending pending = iallreduce_sum(data, count, what);
    return wait(pending);
  }
  Pending iallreduce_sum(float* data, int64_t count, const char* what) override {
    return {comm::iallreduce_sum(data, count, comm_, what)};
  }
  Pending ireduce_scatter_sum(const float* data, float* shard, const std::vector<int>& counts,
                              const char* what) override {
    return {comm::ireduce_scatter_sum(data, shard, counts, comm_, what)};
  }
  Pending iallgather(float* data, const std::vector<int>& counts,
                     const std::vector<int>& displacements, const char* what) override {
    return {comm::iallgather_in_place(data, counts, displacements, comm_, what)};
  }
  Pending isend(const float* data, int64_t count, int peer, int tag, const char* what) override {
    return {comm::isend(data, count, peer, tag, comm_, what)};
  }
  Pending irecv(float* data, int64_t count, int peer, int tag, const char* what) override {
    return {comm::irecv(data, count, peer, tag, comm_, what)};
  }
  bool test(Pending& pending) override { return comm::test(pending.request); }
  bool wait(Pending& pending) override { return comm::wait(pending.request); }

 private:
  MPI_Comm comm_;  // borrowed
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::shared_ptr<Communicator> make_mpi_communicator(MPI_Comm comm) {
  return std::make_shared<MpiCommunicator>(comm);
}

GridCommunicators make_mpi_communicators(const ProcessGrid& grid) {
  GridCommunicators comms;
  comms.tp = make_mpi_communicator(grid.tp_comm());
  comms.pp = make_mpi_communicator(grid.pp_comm());
  comms.dp = make_mpi_communicator(grid.dp_comm());
  return comms;
}

GridCommunicators make_training_communicators(const ProcessGrid& grid, Device device, bool nccl) {
  GridCommunicators comms = make_mpi_communicators(grid);
  comms.tp = make_host_staged(comms.tp, device);
  comms.pp = make_host_staged(comms.pp, device);
  comms.dp = make_host_staged(comms.dp, device);
  if (!nccl) return comms;
  if (device != Device::Cuda) throw std::invalid_argument("NCCL carries CUDA memory only");
#ifdef HG_HAVE_CUDA
  if (grid.tp() > 1) comms.tp = make_nccl_communicator(grid.tp_comm());
  if (grid.pp() > 1) comms.pp = make_nccl_pipeline_communicator(grid.pp_comm());
  if (grid.dp() > 1) comms.dp = make_nccl_communicator(grid.dp_comm());
#else
  throw std::invalid_argument("this build has no NCCL (configure with -DHG_CUDA=ON)");
#endif
  return comms;
}

}  // namespace hg
