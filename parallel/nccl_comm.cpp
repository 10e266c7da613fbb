// NCCL communicators and the all-reduce (parallel/nccl_comm.h), with libnccl loaded by dlopen.
// Host code, compiled by the C++ compiler with the project's warnings; the collective calls are
// compiled, not run (no GPU on this project's machines).
#include "parallel/nccl_comm.h"

#include <dlfcn.h>
#include <nccl.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace hg::cuda {

static_assert(sizeof(NcclId) == sizeof(ncclUniqueId), "NcclId must hold an ncclUniqueId");

struct NcclComm {
  ncclComm_t comm;
};

namespace {

// The entry points used, typed from nccl.h (decltype is unevaluated: no link-time dependency).
struct NcclLibrary {
  decltype(&ncclGetVersion) get_version;
  decltype(&ncclGetUniqueId) get_unique_id;
  decltype(&ncclCommInitRank) comm_init_rank;
  decltype(&ncclAllReduce) all_reduce;
  decltype(&ncclCommDestroy) comm_destroy;
  decltype(&ncclGetErrorString) error_string;
};

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
    l.comm_destroy = symbol<decltype(l.comm_destroy)>(h, "ncclCommDestroy");
    l.error_string = symbol<decltype(l.error_string)>(h, "ncclGetErrorString");
    return l;
  }();
  return library;
}

void check(ncclResult_t r, const std::string& what) {
  if (r != ncclSuccess) throw std::runtime_error("NCCL " + what + ": " + nccl().error_string(r));
}

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
  try {
    check(nccl().comm_init_rank(&c->comm, ranks, nid, rank),
          "ncclCommInitRank (rank " + std::to_string(rank) + " of " + std::to_string(ranks) + ")");
  } catch (...) {
    delete c;
    throw;
  }
  return c;
}

void nccl_all_reduce_sum(NcclComm* comm, float* buf, int64_t n) {
  // stream nullptr: the legacy default stream, ordered after the ops that produced buf.
  check(
      nccl().all_reduce(buf, buf, static_cast<size_t>(n), ncclFloat, ncclSum, comm->comm, nullptr),
      "ncclAllReduce of " + std::to_string(n) + " floats");
}

void nccl_finalize(NcclComm* comm) {
  if (comm == nullptr) return;
  const ncclResult_t r = nccl().comm_destroy(comm->comm);
  delete comm;
  check(r, "ncclCommDestroy");
}

}  // namespace hg::cuda
