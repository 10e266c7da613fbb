// `hourglass plan`: ranks parallel layouts (dp, pp, tp, micro-batch, schedule) of one model on
// one cluster by predicted step time, without running them (docs/scaling.md).
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
// parameter in fp32, 18 in bf16 mixed precision) + the activations a micro-batch keeps from
// forward to backward × the most micro-batches the schedule keeps alive on that stage
// (trainer/memory_estimate.h: the same functions give `hourglass train`'s memory check).
//
// Interleaved 1F1B (plan.schedules = interleaved, plan.virtual_stages = v): the units are
// partitioned into pp · v virtual stages, virtual stage k on rank k mod pp as its chunk k / pp,
// each costed as a stage; a rank's memory charges its largest chunk's activations per alive
// (micro-batch, chunk) pair, and its gradient buckets count as ready at chunk 0's final backward.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "parallel/schedule.h"
#include "trainer/config.h"

namespace hg {

// One cluster. Bandwidths are per device and direction: what one rank can send while every
// other rank sends too (e.g. NVLink per GPU within a node, the NIC's share between nodes).
struct ClusterSpec {
  int nodes = 1;
  int devices_per_node = 1;       // ranks per node (GPUs, or CPU processes)
  double device_flops = 1e11;     // peak FLOP/s of one device: the MFU denominator
  double device_memory = 16e9;    // bytes per device
  double intra_bandwidth = 5e9;   // bytes/s, between ranks of one node
  double inter_bandwidth = 5e9;   // bytes/s, between nodes
  double latency = 5e-6;          // seconds per message between nodes
  double intra_latency = -1;      // seconds per message within a node; < 0 = `latency`
  double allreduce_latency = -1;  // seconds per call of the gradient all-reduce, whose calls run
                                  // back to back; < 0 = 2⌈log2 n⌉ · latency, as other all-reduces
  double allreduce_bandwidth = -1;  // bytes/s of an all-reduce's ring term ("bus bandwidth");
                                    // < 0 = the link's
  double message_overhead = 0;  // seconds a pipeline message costs beyond latency + bytes /
                                // bandwidth: delivery to a receiver that has been waiting while
                                // its sender computes on (bench_comm measures it)
  double efficiency = 0.5;          // achieved fraction of device_flops (cost-model compute only)
  double unit_overhead = 0;         // seconds per unit per forward or backward (kernel launches)
  double memory_reserve = 0;    // bytes per device not available to the model (runtime, buffers)
  double memory_bandwidth = 0;  // bytes/s for the optimizer (cost-model mode) and the copies into
                                // and out of gradient buckets; 0 = not modelled
  // 1: collectives progress on the ranks' own cores (CPU ranks, MPI without a progress thread):
  // a gradient bucket's reduction and copies run inside the tests between units, so its bytes
  // term adds to the final backward and only its latency is hidden. 0: a device's copy engines
  // and NICs do it beside the compute (GPUs, NCCL).
  int host_collectives = 0;

  int devices() const { return nodes * devices_per_node; }
};

struct PlanOptions {
  int ranks = 0;                   // world size to plan for; 0 = every device of the cluster
  int dp = 0, pp = 0, tp = 0;      // fix one of them; 0 = any
  std::vector<int> micro_batches;  // candidate micro-batch sizes; empty = every divisor
  int max_micro_batch = 0;         // 0 = no limit
  std::vector<std::string> schedules = {"gpipe", "1f1b"};  // and/or "interleaved"
  // Chunks per rank v to try for interleaved (each in [2, kMaxVirtualStages]); empty =
  // parallel.virtual_stages if the config interleaves, else 2.
  std::vector<int> virtual_stages;
  std::string precision = "fp32";  // fp32 | bf16 (mixed: bf16 values and activations)
  double bucket_mb = 0;            // dp all-reduce bucket (MiB); 0 = parallel.grad_bucket_mb
  std::string calibration;         // file written by --calibrate; "" = cost model
  int top = 10;                    // rows printed; 0 = every layout
  std::string format = "table";    // table | csv (every layout, feasible or not)
  // --calibrate
  int repeats = 5;
  std::string statistic = "median";    // median | min of the repeats (min: a shared machine)
  std::vector<int> concurrency = {1};  // copies run at once (ranks sharing a node's memory system)
  std::vector<int> tp_sizes = {1};     // also time each unit's tensor-parallel shard for these
};

// One unit's measured time per micro-batch of `micro_batch` sequences (seconds).
struct UnitTiming {
  std::string name;
  int micro_batch = 1;
  int concurrency = 1;  // copies of the calibration running at once on the machine
  int tp = 1;           // the unit as built for this tensor-parallel size (rank 0's shard)
  double forward = 0, backward = 0;
  double update = 0;  // zeroing, norm and AdamW of the unit's parameters
};

struct Calibration {
  std::string model_key;  // the [model] section and seq_len it was measured for, on one line
  int threads = 1;
  std::string statistic = "median";  // of the repeats: median | min
  std::vector<UnitTiming> units;
};

// Times every unit alone (one StageModel per unit, chained through one Slot, the update of
// every unit after each backward as in a step) at every micro-batch size of `micro_batches`,
// with `options.concurrency` copies running at once (each level needs that many - 1 started in
// `copies`) and as the rank-0 shard of each of `options.tp_sizes`; keeps the median of
// `options.repeats` passes, or the minimum when `options.statistic` is "min" (other processes
// only ever add time: the fastest repeat is the least disturbed). The settings are interleaved:
// each repeat is one pass over every (concurrency, tp, micro-batch), so that a machine whose
// speed drifts over seconds (neighbours on shared cores) biases every setting alike instead of
// whichever block of repeats it happened to hit. With tp > 1 the units are rank 0's shards, their
// all-reduces over MPI_COMM_SELF (MPI must be initialised): the compute of a shard, which for
// small matrices is more than 1/tp of the whole.
class CalibrationCopies;
Calibration calibrate(const Config& config, const std::vector<int>& micro_batches,
                      const PlanOptions& options, CalibrationCopies* copies = nullptr);

// Copies of the calibration's work in forked processes (fork before MPI is initialised), to
// time units while other ranks of the node compute, as they share its caches and memory
// bandwidth (on this machine two ranks compute 10-40% slower each than one alone).
class CalibrationCopies {
 public:
  CalibrationCopies(const Config& config, const std::vector<int>& micro_batches, int count);
  ~CalibrationCopies();  // kills them
  CalibrationCopies(const CalibrationCopies&) = delete;
  CalibrationCopies& operator=(const CalibrationCopies&) = delete;
  void run(int count);  // the first `count` copies run, the others are stopped

 private:
  std::vector<int> pids_;
};
void write_calibration(const std::string& path, const Calibration& calibration);
Calibration read_calibration(const std::string& path);  // UsageError if missing or malformed
std::string calibration_model_key(const Config& config);

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

struct PlanResult {
  std::vector<LayoutPlan> layouts;  // sorted: fitting first, by step time
  double model_flops_per_step = 0;  // cost model, forward + backward
  int64_t params = 0;
  int world = 0;
  std::vector<std::string> skipped;  // (dp, pp, tp) combinations not evaluated, and why
};

PlanResult plan_layouts(const Config& config, const ClusterSpec& cluster,
                        const PlanOptions& options);

// `hourglass plan [--config FILE] [--section.key value ...] [--cluster FILE.ini]
// [--cluster.key value ...] [--plan.key value ...] [--calibrate]`. Returns an exit code.
int plan_main(const std::vector<std::string>& args);

}  // namespace hg
