// Memory per rank, as `hourglass plan` ranks layouts by it and `hourglass train` checks its own
// layout against the node before allocating anything (issue 12: a configuration too large for the
// machine must be refused with exit 2, not die mid-run with std::bad_alloc).
//
// A rank holds
//   parameter state: values, gradients and two AdamW moments = 16 bytes per parameter in fp32
//     (20 in bf16 mixed precision) of its units, tensor-parallel units (blocks; down/up with
//     attention resampling) at 1/tp;
//   activations: what one micro-batch keeps from forward to backward (UnitPlan::activation_bytes;
//     under tp, Megatron-LM's 10/34 of a block's stays replicated) × the most micro-batches the
//     schedule keeps alive on that rank (1F1B: min(pp - stage, m), GPipe: m, zbh1: min(pp, m),
//     interleaved: counted from its instruction list, each (micro-batch, chunk) pair charged the
//     largest chunk's);
//   with train.recompute = blocks, a block keeps only its input per micro-batch in flight, plus one
//     block's whole activations while it is recomputed (transient).
#pragma once
#include <mpi.h>

#include <string>
#include <vector>

#include "model/units.h"
#include "parallel/schedule.h"
#include "trainer/config.h"

namespace hg {

// Units whose parameters and compute tensor parallelism splits: blocks, and with attention
// resampling the down/up units too (their attention heads and FFN: model/unit_resample.cpp).
bool tp_sharded(const ModelConfig& model, const UnitPlan& unit);

// One stage (or virtual stage, an interleaved rank's chunk) of units.
struct ChunkMemory {
  double params = 0;       // parameters held (tp-sharded units: 1/tp of theirs)
  double activations = 0;  // bytes kept per micro-batch in flight
  double transient = 0;    // recompute: one block's whole activations, at most one at a time
};

// Adds `unit` at `micro_batch` sequences per micro-batch on a tp-way split, its activations in
// `value_bytes` per number (4 fp32, 2 bf16), to `chunk`.
void add_unit_memory(ChunkMemory& chunk, const ModelConfig& model, const UnitPlan& unit,
                     int micro_batch, int tp, bool recompute, double value_bytes);

// Units [first, last) of `plans` as one chunk.
ChunkMemory chunk_memory(const ModelConfig& model, const std::vector<UnitPlan>& plans, int first,
                         int last, int micro_batch, int tp, bool recompute, double value_bytes);

struct RankMemory {
  double param_bytes = 0;       // parameters × state bytes: values, gradients, AdamW moments
  double activation_bytes = 0;  // per live micro-batch (the largest chunk's)
  int live_micro_batches = 0;   // (micro-batch, chunk) pairs the schedule keeps alive at once
  double transient_bytes = 0;   // recompute: one block's whole activations
  double activations() const { return activation_bytes * live_micro_batches + transient_bytes; }
  double total() const { return param_bytes + activations(); }
};

// Bytes a rank keeps per parameter it holds: value and gradient (4 + 4) and the two AdamW moments
// (8), of which ZeRO-1 (parallel.zero 1) keeps only its 1/dp shard; bf16 (train.precision) adds the
// step's two 2-byte rounded copies of the value (WeightCopiesScope, core/gemm.h: as stored for
// the forward, transposed for the dX products).
double parameter_state_bytes(bool bf16, int zero, int dp);

// A rank holding `chunks` with `live` (micro-batch, chunk) pairs alive at most, `state_bytes` per
// parameter (16 fp32, 20 bf16).
RankMemory rank_memory(const std::vector<ChunkMemory>& chunks, int live, double state_bytes);

// The most (micro-batch, chunk) pairs forwarded but not yet backwarded (zbh1: not yet through
// their W) along one rank's list: the runtime executes the list in order, so this is what it
// keeps (simulate's max_alive).
int max_live_micro_batches(const std::vector<Instruction>& list);

// The estimate for pipeline stage `stage` of `hourglass train`'s own layout (fp32): the units of
// rank_chunks(first, pp, stage), the tp of parallel.tp, and the live micro-batches of the
// configured schedule with batch / dp / micro_batch micro-batches (× the granularities under
// train.matformer = joint, each a slot of its own).
RankMemory estimate_rank_memory(const Config& config, const std::vector<UnitPlan>& plans,
                                const std::vector<int>& first, int stage);

// What the node offers: the smaller of /proc/meminfo's MemTotal and the cgroup limit of this
// process (v2 memory.max, v1 memory.limit_in_bytes, from its own cgroup up to the root; the
// smallest number found). `proc` and `cgroup` are the mount points (tests pass fake trees).
struct NodeMemory {
  double bytes = 0;    // 0 when nothing could be read
  std::string source;  // "MemTotal" or the cgroup file that set it
};
NodeMemory detect_node_memory(const std::string& proc = "/proc",
                              const std::string& cgroup = "/sys/fs/cgroup");

// "37.2 GiB", "81.3 MiB", "512.0 KiB": one decimal in the largest binary unit below the value.
std::string format_bytes(double bytes);

// Collective over `world`. Each rank estimates its own memory (estimate_rank_memory plus what the
// process already holds: MPI, libraries, the configuration) and the ranks sharing a node
// (MPI_COMM_TYPE_SHARED) compare their sum with the node's memory: run.memory_limit_gb GiB when
// > 0, detect_node_memory() when 0, no check when < 0. Throws UsageError on every rank of a node
// that would not fit, naming the estimate per rank, the limit and its source, and what to change.
// With run.device cuda the ranks sharing each GPU are compared with its memory instead (less a
// reserve for the CUDA context; run.memory_limit_gb > 0 replaces it).
void check_node_memory(const Config& config, const std::vector<UnitPlan>& plans,
                       const std::vector<int>& first, int stage, MPI_Comm world);

}  // namespace hg
