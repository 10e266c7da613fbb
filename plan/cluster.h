// The planner's inputs besides the model: the cluster (`[cluster]`: devices, links, latencies) and
// the planner's own options (`[plan]`), from a cluster file and `--cluster.key` / `--plan.key`
// flags (docs/scaling.md). Numbers take SI suffixes: 80G, 450G, 5e-6.
#pragma once
#include <string>
#include <vector>

#include "parallel/schedule.h"

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

// A plan.schedules entry as its ScheduleKind; UsageError naming the choices otherwise.
ScheduleKind schedule_kind(const std::string& name);

// `hourglass plan`'s arguments: the cluster and the options from `--cluster FILE` and the
// `--cluster.key value` / `--plan.key value` flags (flags win), validated; every other argument is
// the run configuration's (parse_config).
struct PlanCommand {
  ClusterSpec cluster;
  PlanOptions options;
  bool calibrate = false;                // --calibrate
  std::vector<std::string> config_args;  // for parse_config
};
PlanCommand parse_plan_command(const std::vector<std::string>& args);

// Every [cluster] and [plan] key with its meaning and default (`hourglass plan --help`), from the
// table the parser uses.
std::string describe_plan_keys();

}  // namespace hg
