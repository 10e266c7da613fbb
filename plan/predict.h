// What one layout of `hourglass plan` costs: its step time, predicted without running it, and the
// memory of its ranks (docs/scaling.md).
//
// A layout's step is predicted the way the trainer runs it (trainer/distributed_step.cpp):
//   1. the pipeline: the schedule's instruction lists executed by the schedule's own event
//      simulation (hg::simulate, parallel/schedule.h) in which compute ops take the stage's
//      forward / backward time and every message takes latency + bytes / bandwidth on its link
//      (one message at a time per link);
//   2. the data-parallel gradient all-reduce, in buckets of parallel.grad_bucket_mb filled in
//      backward order, each started when the stage's final backward has passed its units
//      (parallel/grad_buckets.h): it overlaps that backward, and only what is left after it
//      (gradient_sync) adds to the step;
//   3. then the optimizer on the rank's parameters.
// The step is the slowest rank's 1 + 2 + 3. Compute per unit comes either from a calibration
// file (`hourglass plan --calibrate` times every unit's forward and backward on this machine) or
// from the cost model of model/units.h (FLOPs / (device FLOP/s · efficiency)). Tensor
// parallelism divides a block's compute by tp and adds four all-reduces of its activation per
// block (two in the forward, two in the backward), on the node's links.
//
// Memory per rank: parameter state (values, gradients, two AdamW moments: 16 bytes per
// parameter in fp32, 20 in bf16 mixed precision) + the activations a micro-batch keeps from
// forward to backward × the most micro-batches the schedule keeps alive on that stage
// (trainer/memory_estimate.h: the same functions give `hourglass train`'s memory check).
//
// Zero-bubble H1 (plan.schedules = zbh1): the list's Backward costs the stage's B and its
// BackwardWeight its W (calibrated, or the FLOP split of the cost model); the gradient buckets
// start at the final W, as the runtime starts them, so they overlap W alone. Memory: a
// micro-batch stays alive until its W (simulate's count: min(pp, m) on every stage).
//
// Interleaved 1F1B (plan.schedules = interleaved, plan.virtual_stages = v): the units are
// partitioned into pp · v virtual stages, virtual stage k on rank k mod pp as its chunk k / pp,
// each costed as a stage; a rank's memory charges its largest chunk's activations per alive
// (micro-batch, chunk) pair, and its gradient buckets count as ready at chunk 0's final backward.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/units.h"
#include "parallel/partition.h"
#include "parallel/schedule.h"
#include "plan/calibration.h"
#include "plan/cluster.h"
#include "trainer/config.h"
#include "trainer/memory_estimate.h"

namespace hg {

// ---- communication costs ----

// Ring all-reduce of `bytes` over `n` ranks: 2(n-1)/n · bytes / bandwidth + 2(n-1) · latency.
double ring_allreduce_seconds(double bytes, int n, double bandwidth, double latency);

// What the planner charges for `calls` all-reduces moving `bytes` in total over `n` ranks: the
// ring's bandwidth term 2(n-1)/n · bytes / bandwidth, plus per call 2⌈log2 n⌉ · latency (a tree
// or recursive doubling, as libraries choose for many ranks; the ring's 2(n-1) · latency at
// n = 2), or `call_latency` per call when that is >= 0 (measured: cluster.allreduce_latency).
double allreduce_seconds(double bytes, int n, double bandwidth, double latency, double calls,
                         double call_latency = -1);

// The data-parallel gradient all-reduce of one stage as the trainer runs it (grad_buckets.h):
// the stage's gradient bytes, in backward order (last unit first), are cut into buckets of
// `bucket_bytes` (the last one smaller); a bucket's all-reduce starts once the final backward has
// finished the unit holding its last byte, after the previous bucket's. `backward[i]` and
// `bytes[i]` are the i-th unit in backward order: its final-backward seconds and gradient bytes.
// A call costs `latency` + `seconds_per_byte` · bytes, and copying a bucket's gradients in and
// out `copy_seconds_per_byte` · bytes each, on the rank. Buckets started during the backward
// lengthen it by their copies and, when `on_host` (CPU ranks), by their bytes term too; buckets
// ready only at its end (the last one) run after it, one after the other.
struct AllReduceCost {
  double latency = 0;           // seconds per call
  double seconds_per_byte = 0;  // the ring's 2(n-1)/n / bandwidth
  double copy_seconds_per_byte = 0;
  bool on_host = false;
};
struct GradientSync {
  int calls = 0;               // buckets = ceil(Σ bytes / bucket_bytes)
  double seconds = 0;          // Σ of the calls and copies
  double during_backward = 0;  // added to the final backward (copies; on a host, the reduction)
  double exposed = 0;          // after the final backward ends: what the step waits for
};
GradientSync overlapped_gradient_sync(const std::vector<double>& backward,
                                      const std::vector<double>& bytes, double bucket_bytes,
                                      const AllReduceCost& cost);

// ---- layouts ----

struct LayoutPlan {
  int dp = 1, pp = 1, tp = 1, micro_batch = 1, micro_batches = 1;
  ScheduleKind schedule = ScheduleKind::OneFOneB;
  int virtual_stages = 1;  // chunks per rank: > 1 only for Interleaved
  double step_seconds = 0;
  double pipeline_seconds = 0;   // the simulated schedule (compute, tp all-reduces, messages)
  double dp_seconds = 0;         // gradient all-reduce after the final backward (slowest rank)
  double dp_total_seconds = 0;   // all of it, including what the final backward hides
  double optimizer_seconds = 0;  // slowest rank
  double tp_seconds = 0;         // tp all-reduces inside the busiest stage's compute, per step
  double bubble = 0, theory_bubble = 0;
  double memory_bytes = 0;                       // largest rank
  double param_bytes = 0, activation_bytes = 0;  // of that rank
  double tokens_per_second = 0, mfu = 0;
  bool fits = true;
  std::string note;  // why it does not fit, or another remark
};

// One stage's (or virtual stage's) costs at one micro-batch size and tp (plan_layouts).
struct StageCosts {
  double forward = 0, backward = 0;  // seconds per micro-batch, tp all-reduces included
  // zbh1's split of the backward: B (input gradient; the tp all-reduces and a recomputed forward
  // are in it) and W (the weight-gradient products), per micro-batch.
  double input = 0, weight = 0;
  double tp_time = 0;  // seconds of tp all-reduces per micro-batch
  double update = 0;   // the optimizer on its parameters
  ChunkMemory memory;  // parameters held, activations (trainer/memory_estimate.h)
  // The final backward (zbh1: the final W) unit by unit, last unit first, and each unit's
  // gradient bytes.
  std::vector<double> unit_backward, unit_weight, unit_grad_bytes;
};

// What every layout is costed from, the same for all of them: the model's units, the bytes the
// precision gives each kind of number, the cluster, the gradient bucket, the calibration if any.
struct PlanInputs {
  const Config& config;
  const ClusterSpec& cluster;
  const PlanOptions& options;
  std::vector<UnitPlan> plans;
  std::vector<UnitInfo> infos;  // of plans, for partitioning and skip edges
  int units = 0;                // U
  int seq_len = 0, batch = 0;   // L, B
  double value_bytes = 0;       // activations and messages
  bool bf16 = false;            // plan.precision bf16
  double grad_bytes = 0;        // all-reduced per parameter
  double optimizer_bytes = 0;   // memory traffic per parameter update
  double intra_latency = 0;     // cluster.intra_latency, else cluster.latency
  bool recompute = false;       // blocks recompute their forward in the backward
  double bucket_bytes = 0;      // the dp all-reduce bucket
  int granularity_runs = 1;     // runs of each micro-batch: one per sub-model when joint (plans'
                                // block costs are then their mean over the sub-models)
  std::unique_ptr<CalibrationIndex> calibration;  // null: the cost model
  int world = 0;                                  // W
  int busy_per_node = 0;  // ranks sharing a node's memory system (calibration concurrency)
  double model_flops_per_step = 0;
  int64_t params = 0;

  PlanInputs(const Config& c, const ClusterSpec& cl, const PlanOptions& o);

  // A calibration measured for another model or seq_len would price the wrong units: refuse it.
  void read_calibration_index();
};

// (pp, v) -> first unit of each of the pp · v virtual stages: the same for every tp and dp, so
// each is partitioned once.
using Partitions = std::map<std::pair<int, int>, std::vector<int>>;

// One grid of dp × pp × tp ranks on the cluster, rank (d·pp + s)·tp + t on node rank / G: what its
// links, all-reduces and stages cost, and so the step of each schedule it can run.
class GridCosts {
 public:
  GridCosts(const PlanInputs& in, Partitions& partitions, int dp, int pp, int tp)
      : in_(in), cluster_(in.cluster), partitions_(partitions), dp_(dp), pp_(pp), tp_(tp) {}

  LayoutPlan evaluate(ScheduleKind kind, int v, int mb, int m);

 private:
  int node(int d, int s) const { return ((d * pp_ + s) * tp_) / cluster_.devices_per_node; }
  // A link is intra-node only if it is for every replica d.
  bool same_node(int s1, int s2) const {
    for (int d = 0; d < dp_; ++d)
      if (node(d, s1) != node(d, s2)) return false;
    return true;
  }
  double link_seconds(double bytes, bool intra) const;
  double allreduce(double bytes, int n, bool intra, double calls, bool back_to_back) const;
  const std::vector<int>& partition(int v);
  void add_unit(StageCosts& c, const UnitPlan& p, int mb) const;
  StageCosts range_costs(int u0, int u1, int mb) const;
  std::vector<GradientSync> gradient_syncs(ScheduleKind kind, const std::vector<StageCosts>& stage,
                                           int v) const;
  SimulationCosts simulation_costs(ScheduleKind kind, const std::vector<StageCosts>& stage,
                                   const std::vector<GradientSync>& sync,
                                   const std::vector<int>& first,
                                   const std::vector<SkipEdge>& skips, int mb, int m) const;
  double add_rank_totals(LayoutPlan& lp, const std::vector<StageCosts>& stage,
                         const std::vector<GradientSync>& sync, const SimulationResult& sim, int v,
                         int m) const;

  const PlanInputs& in_;
  const ClusterSpec& cluster_;
  Partitions& partitions_;
  const int dp_, pp_, tp_;
};

}  // namespace hg
