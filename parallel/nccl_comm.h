// NCCL between GPUs, MPI to bootstrap (ARCHITECTURE.md §7), as small and C-like as parallel/comm.h:
// one rank draws an id, the caller broadcasts its bytes over MPI (parallel/ owns MPI; core does
// not depend on it), every rank creates its communicator -- once, up front, in a fixed order.
// parallel/nccl_communicator.h wraps these calls as the trainer's Communicator.
//
// Streams: each communicator owns a non-blocking CUDA stream. Every op is ordered after the work
// queued so far on the compute stream (the legacy default stream the kernels run on: an event
// recorded there, waited for by the communicator's stream), runs on the communicator's stream,
// and returns an event recorded after it. So the caller's compute goes on while the op runs (the
// data-parallel buckets overlap the backward); nccl_event_done() polls the event, and the caller
// must not touch the op's buffers, nor queue work that reads them, until it is done.
//
// libnccl.so.2 is loaded at run time (dlopen), so hg_cuda's link line stays cudart + cuBLAS and a
// CUDA build without NCCL still links and runs; nccl.h (in /usr/local/cuda/include) is needed at
// build time only. The emulated device (docs/cuda.md) links an NCCL over MPI instead
// (tests/cuda_emulation/runtime/nccl.cpp). nccl_version and nccl_unique_id run without a GPU (the
// tests call them); the rest has run on the emulated device only: no GPU has run it.
#pragma once
#include <cstdint>
#include <string>

namespace hg::cuda {

struct NcclId {
  char bytes[128];  // ncclUniqueId (NCCL_UNIQUE_ID_BYTES): broadcast as 128 MPI_BYTEs
};
struct NcclComm;          // one communicator: a group of ranks, one device each, and its stream
using NcclEvent = void*;  // a cudaEvent_t recorded after an op

// The loaded library's version code (e.g. 22809 for 2.28.9). Throws when libnccl.so.2 is missing.
int nccl_version();
// On one rank of the group (the others receive it from that rank over MPI).
NcclId nccl_unique_id();
// Collective over the `ranks` members, each passing its `rank` and the same id. Each rank must
// have selected its device first (select_device, device.h).
NcclComm* nccl_init(const NcclId& id, int ranks, int rank);

// buf [n] (device memory) <- Σ over the group, in place; queued on the default stream and waited
// for by the caller's next copy (the tests). Every member calls it with the same n, in order.
void nccl_all_reduce_sum(NcclComm* comm, float* buf, int64_t n);

// The communicator's ops, on its stream (above). Collectives: every member calls them in the same
// order with the same counts. counts[r] / displacements[r]: rank r's block of a packed buffer.
NcclEvent nccl_iall_reduce_sum(NcclComm* comm, float* buf, int64_t n);
// shard [counts[rank]] (=) Σ over the group of every member's block `rank` of data (one
// ncclReduce per block, grouped: the blocks may differ in size, which ncclReduceScatter forbids).
NcclEvent nccl_ireduce_scatter_sum(NcclComm* comm, const float* data, float* shard,
                                   const int* counts, const int* displacements);
// Every block of data (=) its owner's, in place (one ncclBroadcast per block, grouped).
NcclEvent nccl_iall_gather(NcclComm* comm, float* data, const int* counts,
                           const int* displacements);
// Point to point: NCCL matches sends and receives between two ranks in the order they are issued
// (it has no tags).
NcclEvent nccl_isend(NcclComm* comm, const float* data, int64_t n, int peer);
NcclEvent nccl_irecv(NcclComm* comm, float* data, int64_t n, int peer);

// true once the op before `event` has finished (the event is then destroyed: do not ask again).
// Never blocks. Throws on a CUDA error.
bool nccl_event_done(NcclEvent event);
// Frees the event of an op that will not be asked about again (after an abort).
void nccl_event_release(NcclEvent event);
// An asynchronous error of the communicator (a peer failed, a network error): "" when none.
std::string nccl_async_error(NcclComm* comm);
// Ends the communicator's ops in flight (a stuck NCCL kernel never returns on its own) and frees
// it; after a timeout.
void nccl_abort(NcclComm* comm);
void nccl_finalize(NcclComm* comm);

}  // namespace hg::cuda
