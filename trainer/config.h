// The run's configuration (ARCHITECTURE.md §8): INI sections = key prefixes, every key also a
// `--section.key value` flag that overrides the file; unknown keys are errors; the resolved text
// (every key, defaults filled in) is printed at start and stored in every checkpoint.
#pragma once
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/gemm.h"
#include "layers/attention_backend.h"
#include "model/model_config.h"
#include "parallel/communicator.h"
#include "parallel/schedule.h"

namespace hg {

// Training choices (§3, §1.5): MatFormer granularities trained jointly or one sampled per step;
// activation recomputation of the stack blocks (model/unit_recompute.h).
enum class Matformer { Off, Joint, Sample };
enum class Recompute { None, Blocks };
inline std::span<const char* const> enum_names(Matformer) {  // core/enum_names.h
  static constexpr const char* names[] = {"off", "joint", "sample"};
  return names;
}
inline std::span<const char* const> enum_names(Recompute) {
  static constexpr const char* names[] = {"none", "blocks"};
  return names;
}

struct TrainConfig {
  int seq_len = 768;
  int batch = 8;        // global sequences per step
  int micro_batch = 2;  // sequences per micro-batch per data-parallel replica
  int64_t steps = 1000;
  double lr = 3e-4;
  int64_t warmup = 0;
  double min_lr_ratio = 0.1;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;
  uint64_t seed = 1;
  Matformer matformer = Matformer::Off;
  Recompute recompute = Recompute::None;
  // Operands of every matrix product rounded to bf16, fp32 accumulation (§9.1; core/gemm.h).
  MatmulPrecision precision = MatmulPrecision::Fp32;
};

struct DataConfig {
  std::string dir;
};

struct ParallelConfig {
  int dp = 1;
  int pp = 1;
  int tp = 1;
  ScheduleKind schedule = ScheduleKind::OneFOneB;
  int virtual_stages = 1;     // interleaved: chunks per rank v (the model is cut into pp·v pieces)
  std::string stages;         // "" = automatic; else unit counts per (virtual) stage, e.g. "5,4,6"
  double timeout = 600;       // seconds any blocking wait may take before the job aborts
  double grad_bucket_mb = 4;  // data-parallel gradient all-reduce bucket (MiB), grad_buckets.h
  int zero = 0;  // 1: ZeRO-1, moments and the update sharded over dp (§9.3, grad_buckets.h)
  // run.device cuda: what carries tp, pp and dp traffic (docs/cuda.md, "Which communicator").
  CommunicatorChoice communicator = CommunicatorChoice::Auto;
};

inline bool recompute_blocks(const TrainConfig& t) { return t.recompute == Recompute::Blocks; }

inline int64_t grad_bucket_bytes(const ParallelConfig& p) {
  return static_cast<int64_t>(p.grad_bucket_mb * 1024 * 1024);
}

struct CheckpointConfig {
  std::string dir;    // "" = <run.dir>/checkpoints
  int64_t every = 0;  // 0 = only at the end
  int keep = 3;
  std::string resume = "none";  // none | auto | FILE
  std::string init_from;        // FILE: weights only, fresh optimizer, step 0
};

struct LogConfig {
  int64_t every = 10;
  std::string metrics;      // "" = <run.dir>/metrics.jsonl
  std::string trace;        // "" = no trace
  std::string tensorboard;  // "" = none; else a directory of TensorBoard event files (§9.5)
};

// Validation during training (§9.5): every `every` steps (0 = never) the first `windows`
// evaluation windows (§4) of `split` are scored at full width (and at every granularity in joint
// MatFormer mode); the step's metrics line adds valid_loss and valid_bpc.
struct EvalConfig {
  int64_t every = 0;
  int64_t windows = 64;
  std::string split = "valid";
};

struct RunConfig {
  std::string dir = "runs/default";
  int threads = 0;  // 0 = OpenMP's default
  Device device = Device::Cpu;
  // run.device cuda: native (the hand kernels) or cudnn (layers/attention_backend.h).
  AttentionBackend attention_backend = AttentionBackend::Native;
  double time_limit = 0;  // seconds; 0 = none
  // GiB per node that `train` may fill (trainer/memory_estimate.h): 0 = detect (the smaller of
  // MemTotal and the cgroup limit), > 0 = this many, < 0 = no check.
  double memory_limit_gb = 0;
};

struct Config {
  ModelConfig model;
  TrainConfig train;
  DataConfig data;
  ParallelConfig parallel;
  CheckpointConfig checkpoint;
  LogConfig log;
  RunConfig run;
  EvalConfig eval;

  // The resolved INI text: every key of every section, in a fixed order.
  std::string to_ini() const;
};

// The MatFormer granularities training touches: model.ffn_granularities and
// model.head_granularities unless matformer = off (the band boundaries of stack FFNs and stack
// attentions under tensor parallelism, model/tensor_parallel.h).
inline NestedGranularities trained_granularities(const Config& c) {
  if (c.train.matformer == Matformer::Off) return {};
  return {c.model.ffn_granularities, c.model.head_granularities};
}

// Every key by section: its flag, meaning, valid spellings and default (`hourglass train --help`;
// the parser's own table, so it cannot drift).
std::string describe_configuration();

// Reads `--config FILE` (if given) and every `--section.key value` flag from args (the arguments
// after the subcommand), applies defaults, validates everything that can be checked without
// data (§1.1 divisibility, w >= l, heads | d_model, granularities | ffn, batch split, dp·pp·tp),
// and throws UsageError with one clear message naming the key, the value and the fix.
Config parse_config(const std::vector<std::string>& args);

// Parses INI text (a checkpoint's `config` attribute, possibly only some sections) on top of the
// defaults and validates the model section. Used to rebuild a model from a checkpoint alone.
Config config_from_ini(const std::string& ini_text);

// Validates the model section alone (called by both of the above).
void validate_model(const ModelConfig& model, int seq_len);

}  // namespace hg
