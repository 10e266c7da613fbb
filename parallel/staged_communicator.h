// Host-staged communication: a Communicator over device memory built on one over host memory
// (the MPI one), for run.device cuda when NCCL does not carry a group (docs/cuda.md: ranks that
// share a GPU, or parallel.communicator = mpi).
//
// Every op copies its device input into a host buffer of its own (cudaMemcpy: after the kernels
// queued before it), runs the host op on that buffer, and copies the result back into the device
// buffer once the op completes: inside the blocking call, or inside the test() / wait() that sees
// a non-blocking one finish. So the call sites (tp_allreduce, the gradient buckets, the pipeline
// runtime) pass device pointers and never stage; on the CPU they get the MPI communicator itself.
#pragma once
#include <memory>

#include "core/device.h"
#include "parallel/communicator.h"

namespace hg {

// Buffers passed to the result live on `device`; `host` (memory() == Cpu) carries the bytes.
std::shared_ptr<Communicator> make_host_staged(std::shared_ptr<Communicator> host, Device device);

}  // namespace hg
