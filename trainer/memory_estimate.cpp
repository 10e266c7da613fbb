#include "trainer/memory_estimate.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "core/error.h"
#include "layers/backend.h"
#include "parallel/comm.h"
#include "parallel/partition.h"
#include "trainer/pipeline_runtime.h"

namespace hg {
namespace {

// Megatron-LM's count for a transformer block: of its 34·s·b·h activation bytes, 10 stay
// replicated under tensor parallelism (the LayerNorm inputs, residuals, dropout masks).
constexpr double kReplicatedActivations = 10.0 / 34.0;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// The whole of `path` as one non-negative integer ("max" and unreadable files: false).
bool read_number(const std::string& path, double& out) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text.find_first_not_of("0123456789") != std::string::npos) return false;
  out = std::strtod(text.c_str(), nullptr);
  return true;
}

// Bytes of /proc/self/status's VmRSS: what this process holds already (MPI, the libraries, the
// OpenMP runtime), which a small model's parameters and activations do not dwarf. 0 if unknown.
double resident_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) * 1024;
  return 0;
}

// One row per rank of a node, gathered: what the message lists.
struct RankRow {
  double world_rank, stage, param_bytes, activation_bytes, live, transient_bytes, resident;
  double total() const {
    return param_bytes + activation_bytes * live + transient_bytes + resident;
  }
};

// "rank 0 (stage 0): 12.1 GiB parameters+optimizer, 3.4 GiB activations × 4 live micro-batches,
// 45.0 MiB held by the process already" (the last part: host memory only).
std::string describe(const RankRow& r, bool host = true) {
  std::string text =
      "rank " + std::to_string(static_cast<int>(r.world_rank)) + " (stage " +
      std::to_string(static_cast<int>(r.stage)) + "): " + format_bytes(r.param_bytes) +
      " parameters+optimizer, " + format_bytes(r.activation_bytes) + " activations × " +
      std::to_string(static_cast<int>(r.live)) + " live micro-batch" + (r.live == 1 ? "" : "es");
  if (r.transient_bytes > 0)
    text += ", " + format_bytes(r.transient_bytes) + " for the block being recomputed";
  return host ? text + ", " + format_bytes(r.resident) + " held by the process already" : text;
}

// run.memory_limit_gb as a limit (bytes 0 when it is not > 0: the caller detects one).
NodeMemory configured_limit(double limit_gb) {
  if (limit_gb <= 0) return {};
  char text[32];
  std::snprintf(text, sizeof text, "%g", limit_gb);
  return {limit_gb * kGiB, std::string("run.memory_limit_gb = ") + text};
}

// What can bring a layout under `limit`: activations shrink with the micro-batch and
// recomputation; parameter state (`state` bytes) only with more ranks to share it.
std::string memory_fixes(const Config& config, double state, double limit) {
  if (state > limit)
    return "The parameters and optimizer state alone exceed it: use a smaller model or ";
  return std::string(config.train.micro_batch > 1 ? "Lower train.micro_batch, " : "") +
         (recompute_blocks(config.train) ? "use " : "use train.recompute blocks or ");
}

// run.device cuda: parameters, gradients, moments and activations live on the GPU. The ranks of
// a node share GPU g when their node rank mod the GPUs seen is g (select_device, backend.h);
// their sum is compared with that GPU's memory less a reserve for the CUDA context and cuBLAS's
// workspace (5%, at most 1 GiB), or with run.memory_limit_gb when > 0. The host then holds only
// the process and its staging buffers: no host check.
void check_device_memory(const Config& config, const std::vector<RankRow>& rows) {
  const Device device = config.run.device;
  const int gpus = device_count(device);
  NodeMemory limit = configured_limit(config.run.memory_limit_gb);
  if (limit.bytes <= 0) {
    const double total = device_memory_bytes(device);
    limit = {total - std::min(kGiB, 0.05 * total),
             format_bytes(total) + " less " + format_bytes(std::min(kGiB, 0.05 * total)) +
                 " for the CUDA context and cuBLAS"};
  }
  if (gpus <= 0 || limit.bytes <= 0) return;
  for (int g = 0; g < gpus && g < static_cast<int>(rows.size()); ++g) {
    double needed = 0, state = 0;
    std::string ranks;
    for (size_t i = g; i < rows.size(); i += gpus) {
      needed += rows[i].total() - rows[i].resident;
      state += rows[i].param_bytes;
      ranks += (ranks.empty() ? "" : "; ") + describe(rows[i], false);
    }
    if (needed <= limit.bytes) continue;
    throw UsageError("memory: this layout needs about " + format_bytes(needed) + " on GPU " +
                     std::to_string(g) + " (" + ranks + ") but it has " +
                     format_bytes(limit.bytes) + " (" + limit.source + "). " +
                     memory_fixes(config, state, limit.bytes) +
                     "more GPUs or pipeline/tensor-parallel ranks, or set --run.memory_limit_gb "
                     "(> 0 replaces the GPU's memory; < 0 skips this check).");
  }
}

}  // namespace

bool tp_sharded(const ModelConfig& model, const UnitPlan& unit) {
  return unit.kind == UnitKind::Block ||
         (model.resampling == Resampling::Attention &&
          (unit.kind == UnitKind::Down || unit.kind == UnitKind::Up));
}

void add_unit_memory(ChunkMemory& chunk, const ModelConfig& model, const UnitPlan& unit,
                     int micro_batch, int tp, bool recompute, double value_bytes) {
  const bool sharded = tp_sharded(model, unit);
  // activation_bytes counts fp32 numbers per sample.
  const double activations =
      unit.activation_bytes * value_bytes / 4 * micro_batch *
      (sharded ? kReplicatedActivations + (1 - kReplicatedActivations) / tp : 1);
  chunk.params += unit.params / (sharded ? double(tp) : 1.0);
  if (recompute && unit.kind == UnitKind::Block) {
    // The block's input stays per micro-batch; the rest exists while it is recomputed, one block
    // at a time (the stage's blocks share one cache).
    chunk.activations += double(micro_batch) * unit.rows * model.d_model * value_bytes;
    chunk.transient = std::max(chunk.transient, activations);
  } else {
    chunk.activations += activations;
  }
}

ChunkMemory chunk_memory(const ModelConfig& model, const std::vector<UnitPlan>& plans, int first,
                         int last, int micro_batch, int tp, bool recompute, double value_bytes) {
  ChunkMemory chunk;
  for (int u = first; u < last; ++u)
    add_unit_memory(chunk, model, plans.at(u), micro_batch, tp, recompute, value_bytes);
  return chunk;
}

double parameter_state_bytes(bool bf16, int zero, int dp) {
  const double moments = zero == 1 && dp > 1 ? 8.0 / dp : 8.0;
  return 8.0 + moments + (bf16 ? 4.0 : 0.0);
}

RankMemory rank_memory(const std::vector<ChunkMemory>& chunks, int live, double state_bytes) {
  RankMemory rank;
  double params = 0;
  for (const ChunkMemory& chunk : chunks) {
    params += chunk.params;
    // A live (micro-batch, chunk) pair may be any chunk's: charge the largest (exact at v = 1).
    rank.activation_bytes = std::max(rank.activation_bytes, chunk.activations);
    rank.transient_bytes = std::max(rank.transient_bytes, chunk.transient);
  }
  rank.param_bytes = params * state_bytes;
  rank.live_micro_batches = live;
  return rank;
}

int max_live_micro_batches(const std::vector<Instruction>& list) {
  // zbh1: B releases the unit caches but the weight-gradient operands (copies of each linear's
  // input and output gradient) stay until W; charged as the whole micro-batch, an upper bound.
  const bool split = std::any_of(list.begin(), list.end(),
                                 [](const Instruction& in) { return in.op == Op::BackwardWeight; });
  const Op frees = split ? Op::BackwardWeight : Op::Backward;
  int live = 0, most = 0;
  for (const Instruction& in : list) {
    if (in.op == Op::Forward) most = std::max(most, ++live);
    if (in.op == frees) --live;
  }
  return most;
}

RankMemory estimate_rank_memory(const Config& config, const std::vector<UnitPlan>& plans,
                                const std::vector<int>& first, int stage) {
  const ParallelConfig& parallel = config.parallel;
  const int micro_batch = config.train.micro_batch;
  // train.matformer = joint runs every micro-batch at each sub-model as a slot of its own.
  const int granularities =
      config.train.matformer == Matformer::Joint ? config.model.submodels() : 1;
  const int micro_batches = config.train.batch / parallel.dp / micro_batch * granularities;
  const bool recompute = recompute_blocks(config.train);
  std::vector<ChunkMemory> chunks;
  for (const auto& [u0, u1] : rank_chunks(first, parallel.pp, stage))
    chunks.push_back(
        chunk_memory(config.model, plans, u0, u1, micro_batch, parallel.tp, recompute, 4));
  const auto lists =
      make_schedule(parallel.schedule,
                    PipelineLayout{parallel.pp, micro_batches, skip_edges(unit_infos(plans), first),
                                   parallel.virtual_stages});
  return rank_memory(chunks, max_live_micro_batches(lists.at(stage)),
                     parameter_state_bytes(false, parallel.zero, parallel.dp));
}

NodeMemory detect_node_memory(const std::string& proc, const std::string& cgroup) {
  NodeMemory node;
  {
    std::ifstream in(proc + "/meminfo");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("MemTotal:", 0) == 0) {
        node.bytes = std::strtod(line.c_str() + 9, nullptr) * 1024;
        node.source = "MemTotal";
      }
  }
  // The limit may sit on any ancestor of the process's own cgroup (a Slurm job's, a container's),
  // and a container may show the host's path with only its own subtree mounted: look at every
  // prefix of the path, the mount's root included.
  auto consider = [&](const std::string& dir, const std::string& path, const char* file) {
    std::string prefix = path;
    while (true) {
      const std::string candidate = dir + (prefix == "/" ? "" : prefix) + "/" + file;
      double limit = 0;
      if (read_number(candidate, limit) && limit > 0 && (node.bytes == 0 || limit < node.bytes)) {
        node.bytes = limit;
        node.source = "cgroup limit " + candidate;
      }
      if (prefix.empty() || prefix == "/") break;
      prefix = prefix.substr(0, prefix.rfind('/'));
    }
  };
  consider(cgroup, "/", "memory.max");
  consider(cgroup + "/memory", "/", "memory.limit_in_bytes");
  std::ifstream groups(proc + "/self/cgroup");
  std::string line;
  while (std::getline(groups, line)) {
    // "0::/path" (v2) or "4:memory:/path" (v1; the controllers a comma-separated list).
    const size_t colon = line.find(':'), second = line.find(':', colon + 1);
    if (colon == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = "," + line.substr(colon + 1, second - colon - 1) + ",";
    const std::string path = line.substr(second + 1);
    if (controllers == ",,")
      consider(cgroup, path, "memory.max");
    else if (controllers.find(",memory,") != std::string::npos)
      consider(cgroup + "/memory", path, "memory.limit_in_bytes");
  }
  return node;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (unit < 4 && bytes >= 1024) {
    bytes /= 1024;
    ++unit;
  }
  char text[48];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
  return text;
}

void check_node_memory(const Config& config, const std::vector<UnitPlan>& plans,
                       const std::vector<int>& first, int stage, MPI_Comm world) {
  const double limit_gb = config.run.memory_limit_gb;
  if (limit_gb < 0) return;
  const RankMemory mine = estimate_rank_memory(config, plans, first, stage);
  int world_rank = 0;
  MPI_Comm_rank(world, &world_rank);
  const RankRow row{double(world_rank),
                    double(stage),
                    mine.param_bytes,
                    mine.activation_bytes,
                    double(mine.live_micro_batches),
                    mine.transient_bytes,
                    resident_bytes()};
  constexpr int kFields = sizeof(RankRow) / sizeof(double);
  static_assert(sizeof(RankRow) == kFields * sizeof(double), "RankRow is sent as doubles");
  MPI_Comm node;
  comm::barrier(world);  // MPI has no non-blocking split: a missing rank is named here instead
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &node);
  int node_size = 1;
  MPI_Comm_size(node, &node_size);
  std::vector<RankRow> rows(node_size);
  comm::allgather(&row, sizeof row, rows.data(), node, "all-gather node memory estimates");
  MPI_Comm_free(&node);
  if (config.run.device != Device::Cpu) {
    check_device_memory(config, rows);
    return;
  }

  NodeMemory limit = configured_limit(limit_gb);
  if (limit.bytes <= 0) limit = detect_node_memory();
  if (limit.bytes <= 0) return;  // nothing readable to compare with
  double needed = 0;
  for (const RankRow& r : rows) needed += r.total();
  if (needed <= limit.bytes) return;

  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int host_length = 0;
  MPI_Get_processor_name(host, &host_length);
  constexpr int kListed = 4;  // a node of many ranks repeats its stages: the first few say enough
  std::string ranks;
  for (int i = 0; i < node_size && i < kListed; ++i) ranks += (i ? "; " : "") + describe(rows[i]);
  if (node_size > kListed) ranks += "; and " + std::to_string(node_size - kListed) + " more ranks";
  double state = 0;
  for (const RankRow& r : rows) state += r.param_bytes + r.resident;
  throw UsageError("memory: this layout needs about " + format_bytes(needed) + " on node " + host +
                   " (" + ranks + ") but the node has " + format_bytes(limit.bytes) + " (" +
                   limit.source + "). " + memory_fixes(config, state, limit.bytes) +
                   "more pipeline/tensor-parallel ranks, or set --run.memory_limit_gb (a value > "
                   "0 replaces the detected limit; < 0 skips this check).");
}

}  // namespace hg
