// NCCL between GPUs, MPI to bootstrap (ARCHITECTURE.md §7), as small and C-like as parallel/comm.h:
// one rank draws an id, the caller broadcasts its bytes over MPI (parallel/ owns MPI; core does
// not depend on it), every rank creates its communicator -- once, up front, in a fixed order.
//
// libnccl.so.2 is loaded at run time (dlopen), so hg_cuda's link line stays cudart + cuBLAS and a
// CUDA build without NCCL still links and runs; nccl.h (in /usr/local/cuda/include) is needed at
// build time only. nccl_version and nccl_unique_id run without a GPU (the tests call them);
// nccl_init and nccl_all_reduce_sum are COMPILED, NOT RUN: no machine of this project has a GPU.
#pragma once
#include <cstdint>

namespace hg::cuda {

struct NcclId {
  char bytes[128];  // ncclUniqueId (NCCL_UNIQUE_ID_BYTES): broadcast as 128 MPI_BYTEs
};
struct NcclComm;  // one communicator: a group of ranks, one device each

// The loaded library's version code (e.g. 22809 for 2.28.9). Throws when libnccl.so.2 is missing.
int nccl_version();
// On one rank of the group (the others receive it from that rank over MPI).
NcclId nccl_unique_id();
// Collective over the `ranks` members, each passing its `rank` and the same id. Each rank must
// have selected its device first (select_device, device.h).
NcclComm* nccl_init(const NcclId& id, int ranks, int rank);
// buf [n] (device memory) <- Σ over the group, in place; asynchronous on the default stream, like
// the ops (ops.h). Every member calls it with the same n, in the same order.
void nccl_all_reduce_sum(NcclComm* comm, float* buf, int64_t n);
void nccl_finalize(NcclComm* comm);

}  // namespace hg::cuda
