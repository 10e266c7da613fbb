// What crosses ranks during training, behind one small interface (Flashlight's distributed API:
// small and C-like): all-reduce, isend/irecv, test, and a wait with the timeout of parallel/comm.h.
// The tensor-parallel all-reduces (model/tensor_parallel.h), the gradient buckets
// (parallel/grad_buckets.h) and the pipeline runtime (trainer/pipeline_runtime.h) take one, with
// buffers in its memory(). Three implementations: MPI over a communicator of the ProcessGrid
// (host memory, below); MPI staged through host memory for device buffers
// (staged_communicator.h); NCCL (nccl_communicator.h: ops on the communicator's own stream,
// `Pending::event` the cudaEvent_t after the op, `request` only describing it for the timeout
// message, ncclCommAbort before the abort handler). make_training_communicators picks.
//
// Setup, checkpoints and reports (byte gathers, strings, doubles, barriers) stay on comm:: over
// the grid's MPI_Comms: they move host bytes once per step or run, whatever carries the training.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/device.h"
#include "parallel/comm.h"

namespace hg {

class ProcessGrid;

// An operation in flight, from isend, irecv or iallreduce_sum; complete once done().
// MPI: `request` is comm.h's request (the MPI_Request and what the timeout message names).
// NCCL: `request` only describes the op (see above) and `event` is the cudaEvent_t to poll.
struct Pending {
  comm::Request request;
  void* event = nullptr;  // NCCL: cudaEvent_t recorded after the op, nullptr once complete
  int staged = -1;        // host-staged (staged_communicator.h): its host copy; -1 once copied back
  bool done() const { return request.done() && event == nullptr && staged < 0; }
};

// One group of ranks. Collectives: every member calls them with the same count, in the same
// order. Peers are ranks of this group; timeout messages name them as world ranks (comm.h).
// `what` names the operation in the timeout message and must outlive it (a string literal).
// Buffers of non-blocking ops must stay untouched until the op is done().
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;          // in this group
  virtual int size() const = 0;          // members of this group
  virtual const char* name() const = 0;  // "mpi"
  // Where the buffers passed to every op must live.
  virtual Device memory() const { return Device::Cpu; }
  // true: isend/irecv ignore the tag and a pair's messages match in the order they are issued
  // (NCCL), so a receiver must post in its sender's order (schedule.h: receives_in_sender_order).
  virtual bool matches_in_order() const { return false; }

  // data [count] (=) Σ over the group of data, in place. Waits with the timeout: false only if
  // the abort handler returned (tests).
  virtual bool allreduce_sum(float* data, int64_t count, const char* what) = 0;
  virtual Pending iallreduce_sum(float* data, int64_t count, const char* what) = 0;
  // ZeRO-1, non-blocking (comm.h): `data` packed rank-major, counts[r] elements per rank; the
  // reduce-scatter leaves shard [counts[rank()]] (=) the group's sum of this rank's block; the
  // all-gather fills every block of `data` from its owner, in place. `counts` and
  // `displacements` (Σ counts before r) must outlive the op.
  virtual Pending ireduce_scatter_sum(const float* data, float* shard,
                                      const std::vector<int>& counts, const char* what) = 0;
  virtual Pending iallgather(float* data, const std::vector<int>& counts,
                             const std::vector<int>& displacements, const char* what) = 0;
  // data [count] to / from `peer` under `tag`.
  virtual Pending isend(const float* data, int64_t count, int peer, int tag, const char* what) = 0;
  virtual Pending irecv(float* data, int64_t count, int peer, int tag, const char* what) = 0;

  // true when complete; never blocks. A done() op tests true. Testing is also what moves MPI's
  // large messages and non-blocking collectives forward (comm.h: progress).
  virtual bool test(Pending& pending) = 0;
  // Blocks until complete, or comm::timeout(): then the abort handler gets the message naming
  // `what` and the peer (peers, for a collective); false only if that handler returned.
  virtual bool wait(Pending& pending) = 0;
};

// parallel.communicator: what carries the tp, pp and dp traffic of run.device cuda.
enum class CommunicatorChoice { Auto, Mpi, Nccl };
inline std::span<const char* const> enum_names(CommunicatorChoice) {  // core/enum_names.h
  static constexpr const char* names[] = {"auto", "mpi", "nccl"};
  return names;
}

// Over `comm`, borrowed: its owner (the ProcessGrid) frees it after the communicator is gone.
// Every op is the comm:: function of the same name (same MPI calls, same timeout).
std::shared_ptr<Communicator> make_mpi_communicator(MPI_Comm comm);

// The grid's three groups (grid.h: same members and ranks as tp_comm(), pp_comm(), dp_comm()).
struct GridCommunicators {
  std::shared_ptr<Communicator> tp;  // rank = tensor-parallel rank
  std::shared_ptr<Communicator> pp;  // rank = pipeline stage
  std::shared_ptr<Communicator> dp;  // rank = data-parallel replica
};
// Made once, up front, in a fixed order (tp, pp, dp), after the grid and before any model:
// free for MPI, required for NCCL. The grid must outlive them.
GridCommunicators make_mpi_communicators(const ProcessGrid& grid);
// What carries training traffic for a model on `device`: MPI on the CPU; off it, MPI staged
// through host memory (staged_communicator.h), or with `nccl` NCCL for the groups of more than
// one rank (nccl_communicator.h; created tp, pp, dp, in that order, on every rank; the pipeline's
// pairwise). Collective over the world.
GridCommunicators make_training_communicators(const ProcessGrid& grid, Device device,
                                              bool nccl = false);

}  // namespace hg
