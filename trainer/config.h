// The run's configuration (ARCHITECTURE.md §8): INI sections = key prefixes, every key also a
// `--section.key value` flag that overrides the file; unknown keys are errors; the resolved text
// (every key, defaults filled in) is printed at start and stored in every checkpoint.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace hg {

// One stack of the hierarchy string "n0@K0 n1@K1 ...": n blocks at total shortening K.
struct StackSpec {
  int blocks = 0;
  int shortening = 1;
};

// Parses and validates a hierarchy string (§1.1): odd count, K0 = 1, palindrome of K, strictly
// increasing to the middle, integer ratios. Throws UsageError naming the rule broken.
std::vector<StackSpec> parse_hierarchy(const std::string& text);

struct ModelConfig {
  int vocab_size = 256;
  int d_model = 256;
  int heads = 4;
  int ffn = 1024;
  std::vector<int> ffn_widths;  // per stack block in forward order (extracted checkpoints); empty = all `ffn`
  std::string hierarchy = "2@1 4@3 2@1";
  std::vector<StackSpec> stacks;  // parsed from `hierarchy`
  std::string attention = "long_short";  // long_short | full
  int window = 128;
  int chunk = 16;
  int rank = 1;
  std::string positions = "rope";     // rope | none
  std::string downsample = "linear";  // linear | avg
  std::string upsample = "linear";    // linear | repeat
  std::string resampling = "plain";   // plain | attention
  std::string activation = "relu2";   // relu2 | gelu
  bool dconv = true;
  std::vector<int> ffn_granularities = {1};
  float dropout = 0.0f;

  int head_dim() const { return d_model / heads; }
  int middle() const { return static_cast<int>(stacks.size()) / 2; }
  int total_stack_blocks() const;
};

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
  std::string matformer = "off";  // off | joint | sample
  std::string recompute = "none";  // none | blocks: activation recomputation (unit_recompute.h)
};

struct DataConfig {
  std::string dir;
};

struct ParallelConfig {
  int dp = 1;
  int pp = 1;
  int tp = 1;
  std::string schedule = "1f1b";  // gpipe | 1f1b | interleaved
  int virtual_stages = 1;  // interleaved: chunks per rank v (the model is cut into pp·v pieces)
  std::string stages;      // "" = automatic; else unit counts per (virtual) stage, e.g. "5,4,6"
  double timeout = 600;           // seconds any blocking wait may take before the job aborts
  double grad_bucket_mb = 4;      // data-parallel gradient all-reduce bucket (MiB), grad_buckets.h
};

inline bool recompute_blocks(const TrainConfig& t) { return t.recompute == "blocks"; }

inline int64_t grad_bucket_bytes(const ParallelConfig& p) {
  return static_cast<int64_t>(p.grad_bucket_mb * 1024 * 1024);
}

struct CheckpointConfig {
  std::string dir;        // "" = <run.dir>/checkpoints
  int64_t every = 0;      // 0 = only at the end
  int keep = 3;
  std::string resume = "none";  // none | auto | FILE
  std::string init_from;        // FILE: weights only, fresh optimizer, step 0
};

struct LogConfig {
  int64_t every = 10;
  std::string metrics;  // "" = <run.dir>/metrics.jsonl
  std::string trace;    // "" = no trace
};

struct RunConfig {
  std::string dir = "runs/default";
  int threads = 0;  // 0 = OpenMP's default
  std::string device = "cpu";  // cpu | cuda
  double time_limit = 0;       // seconds; 0 = none
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

  // The resolved INI text: every key of every section, in a fixed order.
  std::string to_ini() const;
};

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

// Checks parallel.dp * pp * tp against the number of MPI ranks (parse_config cannot know it).
// Called by the CLI once MPI is up; throws UsageError naming the layout and the rank count.
void validate_world_size(const Config& config, int world_size);

}  // namespace hg
