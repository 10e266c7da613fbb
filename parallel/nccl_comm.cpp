// NCCL communicators and their ops (parallel/nccl_comm.h), with libnccl loaded by dlopen. Host
// code, compiled by the C++ compiler with the project's warnings.
#include "parallel/nccl_comm.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace hg::cuda {

static_assert(sizeof(NcclId) == sizeof(ncclUniqueId), "NcclId must hold an ncclUniqueId");

struct NcclComm {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;  // non-blocking: never waits for the default stream implicitly
  int ranks = 0, rank = 0;
};

namespace {

// The entry points used, typed from nccl.h (decltype is unevaluated: no link-time dependency).
struct NcclLibrary {
  decltype(&ncclGetVersion) get_version;
  decltype(&ncclGetUniqueId) get_unique_id;
  decltype(&ncclCommInitRank) comm_init_rank;
  decltype(&ncclAllReduce) all_reduce;
  decltype(&ncclReduce) reduce;
  decltype(&ncclBroadcast) broadcast;
  decltype(&ncclSend) send;
  decltype(&ncclRecv) recv;
  decltype(&ncclGroupStart) group_start;
  decltype(&ncclGroupEnd) group_end;
  decltype(&ncclCommGetAsyncError) async_error;
  decltype(&ncclCommAbort) comm_abort;
  decltype(&ncclCommDestroy) comm_destroy;
  decltype(&ncclGetErrorString) error_string;
};

#ifdef HG_CUDA_EMULATED
// The emulated device links its NCCL over MPI (tests/cuda_emulation/runtime/nccl.cpp).
const NcclLibrary& nccl() {
  static const NcclLibrary library{&ncclGetVersion,
                                   &ncclGetUniqueId,
                                   &ncclCommInitRank,
                                   &ncclAllReduce,
                                   &ncclReduce,
                                   &ncclBroadcast,
                                   &ncclSend,
                                   &ncclRecv,
                                   &ncclGroupStart,
                                   &ncclGroupEnd,
                                   &ncclCommGetAsyncError,
                                   &ncclCommAbort,
                                   &ncclCommDestroy,
                                   &ncclGetErrorString};
  return library;
}
#else
template <class Fn>
Fn symbol(void* library, const char* name) {
  void* p = dlsym(library, name);
  if (p == nullptr)
    throw std::runtime_error(std::string("NCCL: libnccl.so.2 has no ") + name +
                             " (NCCL 2.x is needed)");
  return reinterpret_cast<Fn>(p);
}

// Loaded on first use; a failed load throws and the next call tries again.
const NcclLibrary& nccl() {
  static const NcclLibrary library = [] {
    void* h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr)
      throw std::runtime_error(std::string("NCCL: cannot load libnccl.so.2 (") + dlerror() +
                               "); it ships with CUDA in /usr/local/cuda/lib: add that directory "
                               "to LD_LIBRARY_PATH or ld.so.conf");
    NcclLibrary l;
    l.get_version = symbol<decltype(l.get_version)>(h, "ncclGetVersion");
    l.get_unique_id = symbol<decltype(l.get_unique_id)>(h, "ncclGetUniqueId");
    l.comm_init_rank = symbol<decltype(l.comm_init_rank)>(h, "ncclCommInitRank");
    l.all_reduce = symbol<decltype(l.all_reduce)>(h, "ncclAllReduce");
    l.reduce = symbol<decltype(l.reduce)>(h, "ncclReduce");
    l.broadcast = symbol<decltype(l.broadcast)>(h, "ncclBroadcast");
    l.send = symbol<decltype(l.send)>(h, "ncclSend");
    l.recv = symbol<decltype(l.recv)>(h, "ncclRecv");
    l.group_start = symbol<decltype(l.group_start)>(h, "ncclGroupStart");
    l.group_end = symbol<decltype(l.group_end)>(h, "ncclGroupEnd");
    l.async_error = symbol<decltype(l.async_error)>(h, "ncclCommGetAsyncError");
    l.comm_abort = symbol<decltype(l.comm_abort)>(h, "ncclCommAbort");
    l.comm_destroy = symbol<decltype(l.comm_destroy)>(h, "ncclCommDestroy");
    l.error_string = symbol<decltype(l.error_string)>(h, "ncclGetErrorString");
    return l;
  }();
  return library;
}
#endif

void check(ncclResult_t r, const std::string& what) {
  if (r != ncclSuccess) throw std::runtime_error("NCCL " + what + ": " + nccl().error_string(r));
}
void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

cudaEvent_t new_event() {
  cudaEvent_t event = nullptr;
  check_cuda(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreate");
  return event;
}

// The communicator's stream waits for what the default stream has queued so far (the kernels
// that produced the op's input, the copies into a bucket).
void after_compute(NcclComm* comm) {
  cudaEvent_t ready = new_event();
  check_cuda(cudaEventRecord(ready, nullptr), "cudaEventRecord (compute stream)");
  check_cuda(cudaStreamWaitEvent(comm->stream, ready, 0), "cudaStreamWaitEvent");
  cudaEventDestroy(ready);  // destroyed once the wait has been satisfied, as CUDA documents
}

NcclEvent recorded(NcclComm* comm) {
  cudaEvent_t done = new_event();
  check_cuda(cudaEventRecord(done, comm->stream), "cudaEventRecord (NCCL stream)");
  return done;
}

size_t elements(int64_t n) { return static_cast<size_t>(n); }

}  // namespace

int nccl_version() {
  int version = 0;
  check(nccl().get_version(&version), "ncclGetVersion");
  return version;
}

NcclId nccl_unique_id() {
  ncclUniqueId id;
  check(nccl().get_unique_id(&id), "ncclGetUniqueId");
  NcclId out;
  std::memcpy(out.bytes, &id, sizeof id);
  return out;
}

NcclComm* nccl_init(const NcclId& id, int ranks, int rank) {
  ncclUniqueId nid;
  std::memcpy(&nid, id.bytes, sizeof nid);
  auto* c = new NcclComm{};
  c->ranks = ranks;
  c->rank = rank;
  try {
    check(nccl().comm_init_rank(&c->comm, ranks, nid, rank),
          "ncclCommInitRank (rank " + std::to_string(rank) + " of " + std::to_string(ranks) + ")");
    check_cuda(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  } catch (...) {
    if (c->comm) nccl().comm_destroy(c->comm);
    delete c;
    throw;
  }
  return c;
}

void nccl_all_reduce_sum(NcclComm* comm, float* buf, int64_t n) {
  // stream nullptr: the legacy default stream, ordered after the ops that produced buf.
  check(nccl().all_reduce(buf, buf, elements(n), ncclFloat, ncclSum, comm->comm, nullptr),
        "ncclAllReduce of " + std::to_string(n) + " floats");
}

NcclEvent nccl_iall_reduce_sum(NcclComm* comm, float* buf, int64_t n) {
  after_compute(comm);
  check(nccl().all_reduce(buf, buf, elements(n), ncclFloat, ncclSum, comm->comm, comm->stream),
        "ncclAllReduce of " + std::to_string(n) + " floats");
  return recorded(comm);
}

NcclEvent nccl_ireduce_scatter_sum(NcclComm* comm, const float* data, float* shard,
                                   const int* counts, const int* displacements) {
  after_compute(comm);
  check(nccl().group_start(), "ncclGroupStart");
  for (int r = 0; r < comm->ranks; ++r)  // recvbuf is read on the root only
    check(nccl().reduce(data + displacements[r], r == comm->rank ? shard : nullptr,
                        elements(counts[r]), ncclFloat, ncclSum, r, comm->comm, comm->stream),
          "ncclReduce to rank " + std::to_string(r));
  check(nccl().group_end(), "ncclGroupEnd (reduce-scatter)");
  return recorded(comm);
}

NcclEvent nccl_iall_gather(NcclComm* comm, float* data, const int* counts,
                           const int* displacements) {
  after_compute(comm);
  check(nccl().group_start(), "ncclGroupStart");
  for (int r = 0; r < comm->ranks; ++r)
    check(nccl().broadcast(data + displacements[r], data + displacements[r], elements(counts[r]),
                           ncclFloat, r, comm->comm, comm->stream),
          "ncclBroadcast from rank " + std::to_string(r));
  check(nccl().group_end(), "ncclGroupEnd (all-gather)");
  return recorded(comm);
}

NcclEvent nccl_isend(NcclComm* comm, const float* data, int64_t n, int peer) {
  after_compute(comm);
  check(nccl().send(data, elements(n), ncclFloat, peer, comm->comm, comm->stream),
        "ncclSend to rank " + std::to_string(peer));
  return recorded(comm);
}

NcclEvent nccl_irecv(NcclComm* comm, float* data, int64_t n, int peer) {
  after_compute(comm);
  check(nccl().recv(data, elements(n), ncclFloat, peer, comm->comm, comm->stream),
        "ncclRecv from rank " + std::to_string(peer));
  return recorded(comm);
}

bool nccl_event_done(NcclEvent event) {
  auto e = static_cast<cudaEvent_t>(event);
  const cudaError_t status = cudaEventQuery(e);
  if (status == cudaErrorNotReady) return false;
  check_cuda(status, "cudaEventQuery (NCCL op)");
  cudaEventDestroy(e);
  return true;
}

void nccl_event_release(NcclEvent event) {
  if (event) cudaEventDestroy(static_cast<cudaEvent_t>(event));
}

std::string nccl_async_error(NcclComm* comm) {
  ncclResult_t async = ncclSuccess;
  check(nccl().async_error(comm->comm, &async), "ncclCommGetAsyncError");
  return async == ncclSuccess ? std::string() : nccl().error_string(async);
}

void nccl_abort(NcclComm* comm) {
  if (comm == nullptr) return;
  nccl().comm_abort(comm->comm);  // its own error is of no use to a job that is aborting
  cudaStreamDestroy(comm->stream);
  delete comm;
}

void nccl_finalize(NcclComm* comm) {
  if (comm == nullptr) return;
  cudaStreamSynchronize(comm->stream);
  const ncclResult_t r = nccl().comm_destroy(comm->comm);
  cudaStreamDestroy(comm->stream);
  delete comm;
  check(r, "ncclCommDestroy");
}

}  // namespace hg::cuda
