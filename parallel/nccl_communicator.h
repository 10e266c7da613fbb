// The Communicator over NCCL (parallel/nccl_comm.h), for run.device cuda when every rank has a GPU
// of its own (docs/cuda.md, "Which communicator"). Buffers are device memory. Each op runs on the
// communicator's own stream after the compute queued before it, so a gradient bucket's all-reduce
// overlaps the rest of the backward; test() polls the op's event, wait() polls it with
// parallel/comm.h's back-off and timeout (and ncclCommGetAsyncError, which turns a failed peer or
// network into an error naming the op), then calls ncclCommAbort before the abort handler: a
// stuck NCCL kernel never returns on its own.
//
// isend/irecv ignore the tag: NCCL matches a pair's messages in the order they are issued
// (matches_in_order). The pipeline group has its own kind, below.
#pragma once
#include <mpi.h>

#include <memory>

#include "parallel/communicator.h"

namespace hg {

// Collective over the members of `group` (borrowed; the timeout messages name its ranks as world
// ranks): its rank 0 draws the id, comm::broadcast sends it, every member creates its NCCL
// communicator. Each rank must have selected its GPU first.
std::shared_ptr<Communicator> make_nccl_communicator(MPI_Comm group);

// The pipeline's: sends and receives only, each pair of members joined by two NCCL communicators
// (one per direction, each on its own stream), so a direction's messages match in send order
// and nothing else queues behind them; the pipeline runtime posts receives in the sender's
// order (schedule.h: receives_in_sender_order). Collective over `group`: every pair is made, in
// order, pp (pp - 1) NCCL communicators per job.
std::shared_ptr<Communicator> make_nccl_pipeline_communicator(MPI_Comm group);

}  // namespace hg
