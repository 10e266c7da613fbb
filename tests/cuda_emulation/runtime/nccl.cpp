// The emulated NCCL (nccl.h) over MPI.
#include "nccl.h"

#include <mpi.h>

#include <climits>
#include <cstring>
#include <memory>
#include <vector>

namespace {
class PointToPoint;
}  // namespace
struct EmulatedNcclComm {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, ranks = 0;
  std::vector<std::weak_ptr<PointToPoint>> started;  // its sends and receives (ncclCommAbort)
};

namespace {

// The id: a tag, the world rank that drew it and its draw count there (unique in the job).
struct EmulatedId {
  char tag[16];
  int world_rank;
  int serial;
};
static_assert(sizeof(EmulatedId) <= NCCL_UNIQUE_ID_BYTES, "the id fits ncclUniqueId");
constexpr char kTag[16] = "emulated nccl";
constexpr int kInitTag = 29000;  // MPI_COMM_WORLD tags of the members' meeting (+ serial mod 1000)

bool supported(size_t count, ncclDataType_t type) {
  return type == ncclFloat && count <= static_cast<size_t>(INT_MAX);
}
// Device memory, or null where NCCL ignores the buffer (a reduce's result off the root).
void require_device(const char* call, const void* p) {
  if (p != nullptr) hg::emu::require_device_pointer(call, p);
}

}  // namespace

ncclResult_t ncclGetVersion(int* version) {
  *version = 22800;  // the NCCL whose API this emulates (2.28)
  return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  static int serial = 0;
  EmulatedId e{};
  std::memcpy(e.tag, kTag, sizeof kTag);
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &e.world_rank);
  e.serial = serial++;
  std::memset(id->internal, 0, sizeof id->internal);
  std::memcpy(id->internal, &e, sizeof e);
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  EmulatedId e;
  std::memcpy(&e, id.internal, sizeof e);
  if (std::memcmp(e.tag, kTag, sizeof kTag) != 0 || rank < 0 || rank >= nranks)
    return ncclInvalidArgument;
  // Collective over the members only, as NCCL's: each tells the id's drawer its world rank and
  // NCCL rank over MPI_COMM_WORLD, the drawer answers with every member's world rank in NCCL rank
  // order, and the members make their communicator of that group.
  const int tag = kInitTag + e.serial % 1000;
  std::vector<int> members(static_cast<size_t>(nranks), -1);
  int me = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  if (me == e.world_rank) {
    members[static_cast<size_t>(rank)] = me;
    for (int n = 1; n < nranks; ++n) {
      int joined[2];  // world rank, NCCL rank
      MPI_Recv(joined, 2, MPI_INT, MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (joined[1] < 0 || joined[1] >= nranks) return ncclInvalidUsage;
      members[static_cast<size_t>(joined[1])] = joined[0];
    }
    for (int n = 0; n < nranks; ++n)
      if (n != rank) MPI_Send(members.data(), nranks, MPI_INT, members[n], tag, MPI_COMM_WORLD);
  } else {
    const int joined[2] = {me, rank};
    MPI_Send(joined, 2, MPI_INT, e.world_rank, tag, MPI_COMM_WORLD);
    MPI_Recv(members.data(), nranks, MPI_INT, e.world_rank, tag, MPI_COMM_WORLD,
             MPI_STATUS_IGNORE);
  }
  for (int m : members)
    if (m < 0) return ncclInvalidUsage;  // two members gave the same NCCL rank
  MPI_Group world = MPI_GROUP_NULL, group = MPI_GROUP_NULL;
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  MPI_Group_incl(world, nranks, members.data(), &group);
  MPI_Comm created = MPI_COMM_NULL;
  MPI_Comm_create_group(MPI_COMM_WORLD, group, tag, &created);
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  *comm = new EmulatedNcclComm{created, rank, nranks, {}};
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t, ncclComm_t comm, cudaStream_t) {
  if (!supported(count, datatype)) return ncclInvalidArgument;
  require_device("ncclAllReduce", sendbuff);
  require_device("ncclAllReduce", recvbuff);
  hg::emu::DeviceAccess open;
  const void* in = sendbuff == recvbuff ? MPI_IN_PLACE : sendbuff;
  MPI_Allreduce(in, recvbuff, static_cast<int>(count), MPI_FLOAT, MPI_SUM, comm->comm);
  return ncclSuccess;
}

ncclResult_t ncclReduce(const void* sendbuff, void* recvbuff, size_t count,
                        ncclDataType_t datatype, ncclRedOp_t, int root, ncclComm_t comm,
                        cudaStream_t) {
  if (!supported(count, datatype) || root < 0 || root >= comm->ranks) return ncclInvalidArgument;
  require_device("ncclReduce", sendbuff);
  if (comm->rank == root) require_device("ncclReduce (result on the root)", recvbuff);
  hg::emu::DeviceAccess open;
  const void* in = comm->rank == root && sendbuff == recvbuff ? MPI_IN_PLACE : sendbuff;
  MPI_Reduce(in, recvbuff, static_cast<int>(count), MPI_FLOAT, MPI_SUM, root, comm->comm);
  return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, int root, ncclComm_t comm, cudaStream_t) {
  if (!supported(count, datatype) || root < 0 || root >= comm->ranks) return ncclInvalidArgument;
  if (comm->rank == root) require_device("ncclBroadcast", sendbuff);
  require_device("ncclBroadcast", recvbuff);
  hg::emu::DeviceAccess open;
  if (comm->rank == root && sendbuff != recvbuff)
    std::memmove(recvbuff, sendbuff, count * sizeof(float));
  MPI_Bcast(recvbuff, static_cast<int>(count), MPI_FLOAT, root, comm->comm);
  return ncclSuccess;
}

namespace {

// A send or receive in flight on a stream, through a host buffer of its own: MPI moves large
// messages inside later MPI calls, where the arena is closed to the host, so it never sees device
// memory. Every message of a communicator has tag 0: MPI matches them in order, as NCCL does.
class PointToPoint final : public hg::emu::AsyncWork {
 public:
  PointToPoint(const float* send_from, float* recv_into, size_t count, int peer, MPI_Comm comm)
      : host_(count), recv_into_(recv_into) {
    if (send_from) {
      {
        hg::emu::DeviceAccess open;
        std::memcpy(host_.data(), send_from, count * sizeof(float));
      }
      MPI_Isend(host_.data(), static_cast<int>(count), MPI_FLOAT, peer, 0, comm, &request_);
    } else {
      MPI_Irecv(host_.data(), static_cast<int>(count), MPI_FLOAT, peer, 0, comm, &request_);
    }
  }
  // ncclCommAbort: a receive is cancelled and never copied; a send is left to MPI.
  void cancel() {
    if (request_ == MPI_REQUEST_NULL || recv_into_ == nullptr) return;
    MPI_Cancel(&request_);
    MPI_Wait(&request_, MPI_STATUS_IGNORE);
    recv_into_ = nullptr;
  }
  bool complete() override {
    if (request_ == MPI_REQUEST_NULL) return true;
    int done = 0;
    MPI_Test(&request_, &done, MPI_STATUS_IGNORE);
    if (!done) return false;
    if (recv_into_) {
      hg::emu::DeviceAccess open;
      std::memcpy(recv_into_, host_.data(), host_.size() * sizeof(float));
    }
    return true;
  }

 private:
  std::vector<float> host_;
  float* recv_into_;
  MPI_Request request_ = MPI_REQUEST_NULL;
};

// On the default stream (nullptr) the op completes before the call returns.
void start(std::shared_ptr<PointToPoint> op, ncclComm_t comm, cudaStream_t stream) {
  comm->started.push_back(op);
  if (stream != nullptr) {
    hg::emu::enqueue(stream, std::move(op));
    return;
  }
  while (!op->complete()) {
  }
}

}  // namespace

ncclResult_t ncclSend(const void* sendbuff, size_t count, ncclDataType_t datatype, int peer,
                      ncclComm_t comm, cudaStream_t stream) {
  if (!supported(count, datatype) || peer < 0 || peer >= comm->ranks) return ncclInvalidArgument;
  require_device("ncclSend", sendbuff);
  start(std::make_shared<PointToPoint>(static_cast<const float*>(sendbuff), nullptr, count, peer,
                                       comm->comm),
        comm, stream);
  return ncclSuccess;
}

ncclResult_t ncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype, int peer,
                      ncclComm_t comm, cudaStream_t stream) {
  if (!supported(count, datatype) || peer < 0 || peer >= comm->ranks) return ncclInvalidArgument;
  require_device("ncclRecv", recvbuff);
  start(std::make_shared<PointToPoint>(nullptr, static_cast<float*>(recvbuff), count, peer,
                                       comm->comm),
        comm, stream);
  return ncclSuccess;
}

ncclResult_t ncclGroupStart() { return ncclSuccess; }
ncclResult_t ncclGroupEnd() { return ncclSuccess; }

ncclResult_t ncclCommGetAsyncError(ncclComm_t, ncclResult_t* async_error) {
  *async_error = ncclSuccess;
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  MPI_Comm_free(&comm->comm);
  delete comm;
  return ncclSuccess;
}
// Ends what is in flight, as NCCL's abort ends its kernels: receives never matched are cancelled.
ncclResult_t ncclCommAbort(ncclComm_t comm) {
  for (const std::weak_ptr<PointToPoint>& op : comm->started)
    if (auto live = op.lock()) live->cancel();
  return ncclCommDestroy(comm);
}

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess: return "no error";
    case ncclInvalidArgument: return "invalid argument (emulated NCCL)";
    case ncclInvalidUsage: return "invalid usage (emulated NCCL)";
    default: return "error (emulated NCCL)";
  }
}
