// Pipeline schedules as data (ARCHITECTURE.md §6; STYLE.md: "express each schedule as data ...
// prove it deadlock-free in a test that simulates every rank in one process").
//
// make_schedule() returns, for every stage, the ordered list of instructions a small runtime
// executes; simulate() runs all stages' lists in one process and checks them. Nothing here
// touches MPI.
//
// Per micro-batch `mb` on stage s (S stages), the forward is
//   [RecvActivation from s-1, if s > 0]
//   [RecvSkip for every skip edge consumed at s whose producer is another stage]   (level order)
//   Forward
//   [SendActivation to s+1, if s < S-1]
//   [SendSkip for every skip edge produced at s whose consumer is another stage]   (level order)
// and the backward mirrors it:
//   [RecvGradient from s+1, if s < S-1]
//   [RecvSkipGradient for every edge produced at s, consumer elsewhere]
//   Backward
//   [SendGradient to s-1, if s > 0]
//   [SendSkipGradient for every edge consumed at s, producer elsewhere]
//
// The runtime's contract: sends are non-blocking (isend, completed later; their buffers stay
// alive until then); a receive must complete before the compute op that follows it. simulate()
// proves the lists deadlock-free under exactly these semantics. So do not wait for a send right
// after issuing it (wait when its buffer is needed again, or at the end of the step): an awaited
// send is a blocking send, which the proof does not cover. A runtime may post a receive earlier
// than listed (to overlap), as long as it waits for it no later than listed.
//
// Memory: a micro-batch's activations on a stage live from its Forward to its Backward.
// GPipe keeps all m alive on every stage; 1F1B keeps at most min(S - s, m) on stage s.
//
// Zero-bubble H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024): each backward is
// split into Backward (B: the input gradient, with 1F1B's messages) and BackwardWeight (W: the
// weight gradients, no messages). A micro-batch's activations then live from its Forward to its
// BackwardWeight.
//
// Interleaved 1F1B (Megatron-LM's virtual pipeline stages, Narayanan et al. 2021): the model is
// cut into V = S·v virtual stages; virtual stage k runs on rank k mod S as that rank's chunk k / S.
// A rank's list then mixes its chunks: every instruction names its `chunk`, every message the
// chunk at the other end (`peer_chunk`), and the lists above are built per virtual stage, with
// "stage s ± 1" read as "virtual stage k ± 1" (rank (k ± 1) mod S). A skip whose producer and
// consumer virtual stages sit on the same rank needs no message (the rank's micro-batch carries
// it from one chunk to the other), exactly as a same-stage skip. The ideal bubble drops from
// (S−1)/(m+S−1) to (S−1)/(v·m+S−1) for the price of v times the point-to-point messages.
#pragma once
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace hg {

enum class ScheduleKind { GPipe, OneFOneB, Interleaved, ZeroBubbleH1 };
inline std::span<const char* const> enum_names(ScheduleKind) {  // core/enum_names.h
  static constexpr const char* names[] = {"gpipe", "1f1b", "interleaved", "zbh1"};
  return names;
}

enum class Op {
  RecvActivation,
  RecvSkip,
  Forward,
  SendActivation,
  SendSkip,
  RecvGradient,
  RecvSkipGradient,
  Backward,  // the whole backward; under zbh1 only B, the input gradient
  SendGradient,
  SendSkipGradient,
  BackwardWeight,  // zbh1's W: the weight gradients of a micro-batch whose B has run
};

struct Instruction {
  Op op;
  int micro_batch;
  int peer_stage;      // other end of a send/receive = rank in ProcessGrid::pp_comm(); -1 compute
  int skip_level;      // hourglass level i of a skip or its gradient; -1 otherwise
  int chunk = 0;       // this rank's chunk (virtual stage chunk·S + rank) the op belongs to
  int peer_chunk = 0;  // the chunk at the other end of a send/receive; 0 for compute ops
};

// The hourglass residual of level i: produced by the stage holding down/i (which has the skip,
// the output of stack i, as its input), consumed by the stage holding up/i. An edge whose
// producer equals its consumer needs no communication: the skip stays in that stage's memory.
// Under interleaving the stages here are virtual stages (0 .. stages·virtual_stages − 1).
struct SkipEdge {
  int level;
  int producer_stage;
  int consumer_stage;  // >= producer_stage
};

struct PipelineLayout {
  int stages = 1;  // pipeline ranks S
  int micro_batches = 1;
  std::vector<SkipEdge> skips;  // at most one per level; any order
  int virtual_stages = 1;       // chunks per rank v; > 1 only for Interleaved
};

const char* schedule_name(ScheduleKind kind);  // "gpipe" | "1f1b" | "interleaved" | "zbh1"

// At most this many chunks per rank: message_tag() has room for 8.
constexpr int kMaxVirtualStages = 8;

// One instruction list per stage. GPipe: every forward (mb 0..m-1), then every backward
// (mb 0..m-1). 1F1B (PipeDream-flush, as Megatron-LM): stage s runs w = min(S-s-1, m) warm-up
// forwards, then alternates one forward and one backward (mb order) until all m forwards are
// done, then the remaining w backwards. Interleaved (Megatron-LM's interleaved 1F1B): with
// S·v virtual stages and m a multiple of S, rank r's j-th forward is micro-batch
// (j / (S·v))·S + j mod S of chunk (j / S) mod v (groups of S micro-batches per chunk), its j-th
// backward the same micro-batch of chunk v − 1 − (j / S) mod v; it runs
// w = min(2(S−r−1) + (v−1)·S, m·v) warm-up forwards, then alternates forward and backward, then
// the remaining w backwards. ZB-H1 (as PyTorch's ScheduleInterleavedZeroBubble on one chunk per
// rank): 1F1B's forwards and B's in 1F1B's order; on stage s every B from the (s+1)-th on is
// followed by the oldest pending W, and the s W's left close the list. The W's that stage s
// defers fill the tail that 1F1B leaves idle while the last gradients travel down the stages, so
// the bubble shrinks from (S−1)(T_F+T_B+T_W) to (S−1)(T_F+T_B−T_W) of the step; every stage then
// holds at most min(S, m) micro-batches, 1F1B's peak (its stage 0). Throws std::invalid_argument
// on an invalid layout (interleaved: S ≥ 2 when v > 1, m a multiple of S,
// v ≤ kMaxVirtualStages; other kinds: v = 1).
std::vector<std::vector<Instruction>> make_schedule(ScheduleKind kind,
                                                    const PipelineLayout& layout);

// Evaluation (no backward): each micro-batch in turn runs through the virtual stages in order,
// with the same messages as a training schedule's forward. Any m and, with v > 1 chunks per rank,
// any S >= 2: each rank's list is sorted by (micro-batch, virtual stage), and every receive waits
// for a smaller pair, so no list can wait on a later one (simulate() with evaluation = true proves
// it). Throws std::invalid_argument on a bad layout, as make_schedule does.
std::vector<std::vector<Instruction>> make_forward_schedule(const PipelineLayout& layout);

// The MPI tag of a message: the same for a send and its receive. Distinct for the four message
// kinds, every skip level < 31, the sender's chunk (< 8) and micro-batch mod 32 (MPI orders
// messages of equal source, tag and communicator, and both ends handle one kind of one chunk in
// micro-batch order, so the wrap is safe). Fits the 32767 that MPI guarantees as MPI_TAG_UB. -1
// for compute ops.
int message_tag(const Instruction& instruction);

// For a transport that matches a pair's messages in the order they are sent, without tags
// (NCCL): order[p] lists the positions in lists[stage] of the receives from stage p, in the order
// p's list sends them. A receiver that posts each of them only after those before it in order[p]
// pairs every message with its receive. Throws std::logic_error when a receive has no send or a
// send no receive.
std::vector<std::vector<size_t>> receives_in_sender_order(
    const std::vector<std::vector<Instruction>>& lists, int stage);

const char* op_name(Op op);                             // "RecvActivation", ...
std::string to_string(const Instruction& instruction);  // "RecvSkip mb 3 level 0 from stage 0"

// The schedule's ideal bubble on S uniform stages with m micro-batches: (S-1)/(m+S-1), for GPipe
// and 1F1B alike; interleaved over v uniform chunks per rank: (S-1)/(v·m+S-1), i.e. (S-1)/(v·m)
// of the ideal step. Skip messages do not change it when they cost nothing (simulate() agrees): a
// skip leaves its producer before the activation chain reaches its consumer, and its gradient
// before the gradient chain does.
double theoretical_bubble(int stages, int micro_batches, int virtual_stages = 1);
// The same for `kind`; ZB-H1 with T_F = T_B = T_W (the simulator's default split of a backward
// into B 1 and W 1): (S-1)/(3m+S-1), a third of 1F1B's idle time.
double theoretical_bubble(ScheduleKind kind, int stages, int micro_batches, int virtual_stages = 1);

// Durations for simulate(). Compute: per stage (empty = 1 forward, 2 backward on every stage),
// or per op through `compute`. Messages: seconds from a send being issued to its message being
// receivable (latency + transfer) per link; empty or missing entries = free. A directed link
// (from stage, to stage) carries one message at a time: a message starts when it is issued and
// the previous message on that link has arrived.
struct SimulationCosts {
  std::vector<double> forward;   // [stages]
  std::vector<double> backward;  // [stages]: the whole backward, or B where the list has W's
  // [k]: virtual stage k -> k+1 activations, k+1 -> k gradients (k = chunk · S + stage; the
  // stage itself without interleaving). Under interleaving [S-1] is the boundary from rank S-1's
  // chunk 0 to rank 0's chunk 1, not a link of its own: the link's queue is per rank pair.
  std::vector<double> activation_message = {};
  std::vector<double> skip_message = {};  // [level]: the skip and its gradient
  // When set, the duration of one Forward or Backward of `stage`, instead of forward[stage] or
  // backward[stage]: for ops whose cost depends on the micro-batch (e.g. the last backward,
  // which also drives the data-parallel gradient all-reduce).
  std::function<double(int stage, const Instruction& op)> compute = nullptr;
  std::vector<double> weight = {};  // [stages]: W (BackwardWeight); empty = 1 (and B then 1)
};

struct SimulationResult {
  bool ok = false;        // completed with every send matched by exactly one receive
  bool deadlock = false;  // no stage could progress while some had instructions left
  std::string error;      // "" when ok; else what is wrong, e.g. each blocked stage and its wait
  // per stage: max (micro-batch, chunk) pairs forwarded but not yet backwarded
  std::vector<int> max_alive;
  std::vector<double> busy;    // per stage: total compute time
  std::vector<double> finish;  // per stage: time its last instruction completed
  double makespan = 0;         // max over finish
  // Idle fraction of the whole pipeline: 1 − Σ_s busy_s / (S · makespan). Idle time counts from
  // t = 0 (a stage waiting for its first input is idle) to the makespan (a stage that finished
  // early is idle until the last one does). Sends and receives take no time; a receive completes
  // when its send was issued. With uniform stages (forward 1, backward 2) and no skips this equals
  // (S−1)/(m+S−1) for both schedules.
  double bubble = 0;
};

// Executes every stage's list in one process: sends are non-blocking and buffered; a receive
// blocks until the matching send (same kind, micro-batch, skip level and chunks, from the stage it
// names, addressed to this stage) has been issued, and then until its message has arrived (its
// link's cost, after the messages before it on the link); Forward and Backward take their cost.
// Also checks that each stage runs Forward and Backward exactly once per (micro-batch, chunk) it
// touches, Backward after Forward, that every peer is a valid other stage and that no send is
// duplicated or unreceived. evaluation: forward-only lists (make_forward_schedule), where a
// Forward frees its activations at once and no Backward follows.
SimulationResult simulate(const std::vector<std::vector<Instruction>>& lists,
                          const SimulationCosts& costs = {}, bool evaluation = false);

}  // namespace hg
