#include "plan/plan.h"

#include <mpi.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>

#include "core/enum_names.h"
#include "core/error.h"
#include "core/parallel_for.h"
#include "model/stage_model.h"
#include "model/tensor_parallel.h"
#include "model/unit_factories.h"
#include "model/units.h"
#include "parallel/communicator.h"
#include "parallel/partition.h"
#include "trainer/memory_estimate.h"
#include "trainer/optimizer.h"
#include "trainer/pipeline_runtime.h"

namespace hg {
namespace {

// A plan.schedules entry as its ScheduleKind; UsageError naming the choices otherwise.
ScheduleKind schedule_kind(const std::string& name) {
  ScheduleKind kind{};
  require(parse_enum(name, kind), "plan.schedules: '" + name + "' is not a schedule: use " +
                                      enum_choices<ScheduleKind>());
  return kind;
}

// ---- option text ----

// "80e9", "80G", "450G", "5e-6": a finite number with an optional SI suffix (k, M, G, T).
double parse_number(const std::string& key, const std::string& text) {
  double scale = 1;
  std::string digits = text;
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'k':
        scale = 1e3;
        break;
      case 'M':
        scale = 1e6;
        break;
      case 'G':
        scale = 1e9;
        break;
      case 'T':
        scale = 1e12;
        break;
      default:
        break;
    }
    if (scale != 1) digits.pop_back();
  }
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(digits, &used);
  } catch (const std::exception&) {
    used = std::string::npos;
  }
  require(used == digits.size() && !digits.empty() && std::isfinite(value),
          key + " = '" + text + "': expected a number (e.g. 80e9 or 80G)");
  return value * scale;
}

int parse_int(const std::string& key, const std::string& text) {
  const double value = parse_number(key, text);
  require(value == std::floor(value) && std::abs(value) < 1e9,
          key + " = '" + text + "': expected an integer");
  return static_cast<int>(value);
}

std::vector<int> parse_int_list(const std::string& key, const std::string& text) {
  std::vector<int> values;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');) values.push_back(parse_int(key, item));
  return values;
}

std::vector<std::string> parse_word_list(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) words.push_back(item);
  return words;
}

struct OptionSetter {
  const char* key;
  std::function<void(const std::string& key, const std::string& value)> set;
};

std::vector<OptionSetter> cluster_keys(ClusterSpec& c) {
  auto number = [](double& field) {
    return [&field](const std::string& k, const std::string& v) { field = parse_number(k, v); };
  };
  auto integer = [](int& field) {
    return [&field](const std::string& k, const std::string& v) { field = parse_int(k, v); };
  };
  return {{"nodes", integer(c.nodes)},
          {"devices_per_node", integer(c.devices_per_node)},
          {"device_flops", number(c.device_flops)},
          {"device_memory", number(c.device_memory)},
          {"intra_bandwidth", number(c.intra_bandwidth)},
          {"inter_bandwidth", number(c.inter_bandwidth)},
          {"latency", number(c.latency)},
          {"intra_latency", number(c.intra_latency)},
          {"allreduce_latency", number(c.allreduce_latency)},
          {"allreduce_bandwidth", number(c.allreduce_bandwidth)},
          {"message_overhead", number(c.message_overhead)},
          {"efficiency", number(c.efficiency)},
          {"unit_overhead", number(c.unit_overhead)},
          {"memory_reserve", number(c.memory_reserve)},
          {"memory_bandwidth", number(c.memory_bandwidth)},
          {"host_collectives", integer(c.host_collectives)}};
}

std::vector<OptionSetter> plan_keys(PlanOptions& o) {
  auto integer = [](int& field) {
    return [&field](const std::string& k, const std::string& v) { field = parse_int(k, v); };
  };
  auto word = [](std::string& field) {
    return [&field](const std::string&, const std::string& v) { field = v; };
  };
  return {
      {"ranks", integer(o.ranks)},
      {"dp", integer(o.dp)},
      {"pp", integer(o.pp)},
      {"tp", integer(o.tp)},
      {"micro_batches", [&o](const std::string& k,
                             const std::string& v) { o.micro_batches = parse_int_list(k, v); }},
      {"max_micro_batch", integer(o.max_micro_batch)},
      {"schedules",
       [&o](const std::string&, const std::string& v) { o.schedules = parse_word_list(v); }},
      {"virtual_stages", [&o](const std::string& k,
                              const std::string& v) { o.virtual_stages = parse_int_list(k, v); }},
      {"precision", word(o.precision)},
      {"bucket_mb",
       [&o](const std::string& k, const std::string& v) { o.bucket_mb = parse_number(k, v); }},
      {"calibration", word(o.calibration)},
      {"top", integer(o.top)},
      {"format", word(o.format)},
      {"repeats", integer(o.repeats)},
      {"statistic", word(o.statistic)},
      {"concurrency",
       [&o](const std::string& k, const std::string& v) { o.concurrency = parse_int_list(k, v); }},
      {"tp_sizes",
       [&o](const std::string& k, const std::string& v) { o.tp_sizes = parse_int_list(k, v); }}};
}

void apply_option(std::vector<OptionSetter> keys, const std::string& section,
                  const std::string& key, const std::string& value, const std::string& where) {
  for (const OptionSetter& k : keys)
    if (key == k.key) return k.set(section + "." + key, value);
  std::string known;
  for (const OptionSetter& k : keys) known += std::string(known.empty() ? "" : ", ") + k.key;
  throw UsageError("unknown key " + section + "." + key + where + "; the keys of [" + section +
                   "] are " + known);
}

std::string trim(const std::string& text) {
  const size_t a = text.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  const size_t b = text.find_last_not_of(" \t\r");
  return text.substr(a, b - a + 1);
}

// A cluster file: [cluster] and [plan] sections of key = value lines; '#' starts a comment.
void read_cluster_file(const std::string& path, ClusterSpec& cluster, PlanOptions& options) {
  std::ifstream in(path);
  require(in.good(), "cannot read cluster file '" + path + "' (--cluster)");
  std::string section, line;
  for (int number = 1; std::getline(in, line); ++number) {
    line = trim(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    const std::string where = " in " + path + " line " + std::to_string(number);
    if (line.front() == '[') {
      section = trim(line.substr(1, line.find(']') - 1));
      require(section == "cluster" || section == "plan",
              "section [" + section + "]" + where + ": a cluster file has [cluster] and [plan]");
      continue;
    }
    const size_t eq = line.find('=');
    require(eq != std::string::npos && !section.empty(),
            "'" + line + "'" + where + ": expected key = value under [cluster] or [plan]");
    const std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    if (section == "cluster")
      apply_option(cluster_keys(cluster), "cluster", key, value, where);
    else
      apply_option(plan_keys(options), "plan", key, value, where);
  }
}

void validate(const ClusterSpec& c, const PlanOptions& o) {
  require(c.nodes >= 1, "cluster.nodes must be at least 1");
  require(c.devices_per_node >= 1, "cluster.devices_per_node must be at least 1");
  require(c.device_flops > 0, "cluster.device_flops must be positive (FLOP/s)");
  require(c.device_memory > 0, "cluster.device_memory must be positive (bytes)");
  require(c.intra_bandwidth > 0 && c.inter_bandwidth > 0,
          "cluster.intra_bandwidth and cluster.inter_bandwidth must be positive (bytes/s)");
  require(c.latency >= 0, "cluster.latency must be at least 0 (seconds)");
  require(c.message_overhead >= 0, "cluster.message_overhead must be at least 0 (seconds)");
  require(c.efficiency > 0 && c.efficiency <= 1, "cluster.efficiency must be in (0, 1]");
  require(c.unit_overhead >= 0 && c.memory_reserve >= 0 && c.memory_bandwidth >= 0,
          "cluster.unit_overhead, memory_reserve and memory_bandwidth must be at least 0");
  require(c.host_collectives == 0 || c.host_collectives == 1,
          "cluster.host_collectives must be 0 (devices) or 1 (CPU ranks)");
  require(o.ranks >= 0 && o.dp >= 0 && o.pp >= 0 && o.tp >= 0,
          "plan.ranks, plan.dp, plan.pp and plan.tp must be at least 0 (0 = any)");
  require(o.precision == "fp32" || o.precision == "bf16",
          "plan.precision = '" + o.precision + "': use fp32 or bf16");
  require(o.format == "table" || o.format == "csv",
          "plan.format = '" + o.format + "': use table or csv");
  require(!o.schedules.empty(), "plan.schedules is empty: use gpipe,1f1b");
  for (const std::string& s : o.schedules) schedule_kind(s);  // UsageError if unknown
  for (int v : o.virtual_stages)
    require(v >= 2 && v <= kMaxVirtualStages,
            "plan.virtual_stages = " + std::to_string(v) + ": chunks per rank must be in [2, " +
                std::to_string(kMaxVirtualStages) + "] (1 is 1f1b)");
  for (int mb : o.micro_batches) require(mb >= 1, "plan.micro_batches entries must be >= 1");
  require(o.repeats >= 1, "plan.repeats must be at least 1");
  require(o.statistic == "median" || o.statistic == "min",
          "plan.statistic = '" + o.statistic + "': use median or min");
  require(o.bucket_mb >= 0, "plan.bucket_mb must be at least 0 (0 = parallel.grad_bucket_mb)");
}

std::vector<int> divisors(int n) {
  std::vector<int> out;
  for (int d = 1; d <= n; ++d)
    if (n % d == 0) out.push_back(d);
  return out;
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

std::string si(double value, const char* unit) {
  const char* prefixes[] = {"", "k", "M", "G", "T", "P", "E"};
  int p = 0;
  while (std::abs(value) >= 1000 && p < 6) {
    value /= 1000;
    ++p;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3g %s%s", value, prefixes[p], unit);
  return buf;
}

std::string seconds_text(double s) {
  char buf[32];
  if (s >= 1)
    std::snprintf(buf, sizeof buf, "%.3f s", s);
  else if (s >= 1e-3)
    std::snprintf(buf, sizeof buf, "%.2f ms", s * 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.1f us", s * 1e6);
  return buf;
}

// Rows per sample of a sharded unit's tp all-reduces: `output` rows twice in the forward (after
// the attention and the FFN outputs) and twice in the backward (their input gradients); a
// resampling unit's attention also all-reduces its keys/values' gradient, of `input` rows (the
// other resolution's), in the backward.
struct TpAllReduceRows {
  int64_t output = 0, input = 0;
};
TpAllReduceRows tp_allreduce_rows(const ModelConfig& m, const UnitPlan& p) {
  switch (p.kind) {
    case UnitKind::Down:  // queries are the pooled rows, keys/values the level's full rows
      return {p.rows / level_factor(m, p.stack), p.rows};
    case UnitKind::Up:  // queries are the upsampled rows, keys/values the shortened stack's
      return {p.rows * level_factor(m, p.stack), p.rows};
    default:
      return {p.rows, 0};
  }
}

// The tensor-parallel rules of validate_parallel (trainer/config.cpp): "" when tp is allowed.
std::string tp_problem(const Config& c, int tp) {
  if (c.model.heads % tp != 0)
    return "tp " + std::to_string(tp) + " does not divide heads " + std::to_string(c.model.heads);
  std::vector<int> widths = {c.model.ffn};
  if (c.train.matformer != Matformer::Off)
    for (int g : c.model.ffn_granularities) widths.push_back(c.model.ffn / g);
  std::sort(widths.rbegin(), widths.rend());
  widths.erase(std::unique(widths.begin(), widths.end()), widths.end());
  for (size_t i = 0; i < widths.size(); ++i) {
    const int band = widths[i] - (i + 1 < widths.size() ? widths[i + 1] : 0);
    if (band % tp != 0)
      return "tp " + std::to_string(tp) + " does not divide the FFN width band " +
             std::to_string(band);
  }
  for (int w : c.model.ffn_widths)
    if (w % tp != 0)
      return "tp " + std::to_string(tp) + " does not divide ffn width " + std::to_string(w);
  return "";
}

}  // namespace

namespace {

// A micro-batch's forward / backward time of one unit from a calibration: built for this tp
// if measured (else tp 1, and the caller divides), with the most copies at once not above
// `concurrency` (else the fewest), at this micro-batch size, else the nearest size scaled
// linearly.
struct CalibrationIndex {
  std::map<std::string, std::vector<UnitTiming>> by_unit;

  // second: whether the timing is of this tp's shard.
  std::pair<const UnitTiming*, bool> nearest(const std::string& unit, int micro_batch,
                                             int concurrency, int tp) const {
    auto it = by_unit.find(unit);
    require(it != by_unit.end(), "the calibration has no timing for unit " + unit +
                                     "; rerun hourglass plan --calibrate with this model");
    bool has_tp = false;
    for (const UnitTiming& t : it->second) has_tp |= t.tp == tp;
    const int want_tp = has_tp ? tp : 1;
    int level = 0, fewest = std::numeric_limits<int>::max();
    for (const UnitTiming& t : it->second) {
      if (t.tp != want_tp) continue;
      if (t.concurrency <= concurrency) level = std::max(level, t.concurrency);
      fewest = std::min(fewest, t.concurrency);
    }
    if (level == 0) level = fewest;
    const UnitTiming* best = nullptr;
    for (const UnitTiming& t : it->second)
      if (t.tp == want_tp && t.concurrency == level &&
          (!best || std::abs(std::log(double(t.micro_batch) / micro_batch)) <
                        std::abs(std::log(double(best->micro_batch) / micro_batch))))
        best = &t;
    require(best != nullptr, "the calibration has no tp 1 timing for unit " + unit);
    return {best, has_tp};
  }
};

}  // namespace

// ---- calibration ----

namespace {

StepContext calibration_context(const Config& config) {
  StepContext ctx;
  ctx.seed = config.train.seed;
  ctx.dropout = config.model.dropout;
  // The step's scale, 1 / (global batch · L), as in training: smaller gradients can run into
  // subnormal floats, whose arithmetic is much slower on x86 unless flushed to zero.
  ctx.loss_scale = static_cast<float>(1.0 / (double(config.train.batch) * config.train.seq_len));
  return ctx;
}

std::vector<int32_t> calibration_tokens(const Config& config, int micro_batch) {
  std::vector<int32_t> tokens(static_cast<size_t>(micro_batch) * (config.train.seq_len + 1));
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<int32_t>((i * 2654435761u + 12345u) % config.model.vocab_size);
  return tokens;
}

// A forked copy's work while the parent measures: the same passes, forever. Writes one byte to
// `ready` after the first pass.
[[noreturn]] void calibration_load(const Config& config, const std::vector<int>& micro_batches,
                                   int ready) {
  set_num_threads(1);
  StageModel model(config.model, config.train.seq_len);
  model.params().init_all(config.train.seed);
  const StepContext ctx = calibration_context(config);
  for (bool first = true;; first = false) {
    for (int mb : micro_batches) {
      const std::vector<int32_t> tokens = calibration_tokens(config, mb);
      Slot slot;
      slot.ctx = &ctx;
      slot.tokens = tokens.data();
      slot.batch = mb;
      Tensor none, out, din;
      model.forward(slot, none, out);
      model.backward(slot, none, din);
      model.params().zero_grads();
      adamw_update(model.params(), config.train, 1, config.train.lr);
    }
    if (first && write(ready, "r", 1) != 1) _exit(1);
  }
}

}  // namespace

std::string calibration_model_key(const Config& config) {
  const std::string ini = config.to_ini();
  const size_t begin = ini.find("[model]");
  const size_t end = ini.find("\n[", begin + 1);
  std::string key;
  std::istringstream in(ini.substr(begin, end - begin));
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line.front() != '[') key += (key.empty() ? "" : "; ") + line;
  return key + "; seq_len = " + std::to_string(config.train.seq_len);
}

CalibrationCopies::CalibrationCopies(const Config& config, const std::vector<int>& micro_batches,
                                     int count) {
  if (count <= 0) return;
  require(config.run.threads == 1,
          "plan.concurrency > 1 runs single-threaded copies side by side, as single-threaded "
          "ranks do: set --run.threads 1");
  int ready[2] = {-1, -1};
  if (pipe(ready) != 0) throw std::runtime_error("calibration copies: pipe failed");
  for (int c = 0; c < count; ++c) {
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("calibration copies: fork failed");
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      close(ready[0]);
      calibration_load(config, micro_batches, ready[1]);  // until killed
    }
    pids_.push_back(pid);
  }
  close(ready[1]);
  char byte = 0;
  for (int c = 0; c < count; ++c)
    if (read(ready[0], &byte, 1) != 1) break;  // each copy has built its model and done a pass
  close(ready[0]);
  run(0);
}

CalibrationCopies::~CalibrationCopies() {
  for (int pid : pids_) kill(pid, SIGKILL);
  for (int pid : pids_) waitpid(pid, nullptr, 0);
}

void CalibrationCopies::run(int count) {
  require(count <= static_cast<int>(pids_.size()), "calibration: " + std::to_string(count) +
                                                       " copies asked, " +
                                                       std::to_string(pids_.size()) + " started");
  for (size_t c = 0; c < pids_.size(); ++c)
    kill(pids_[c], static_cast<int>(c) < count ? SIGCONT : SIGSTOP);
  if (count > 0) usleep(20000);  // let them get back into their loop
}

Calibration calibrate(const Config& config, const std::vector<int>& micro_batches,
                      const PlanOptions& options, CalibrationCopies* copies) {
  require(options.repeats >= 1, "plan.repeats must be at least 1");
  for (int level : options.concurrency) {
    require(level >= 1, "plan.concurrency entries must be at least 1");
    require(level == 1 || copies != nullptr,
            "calibration: concurrency " + std::to_string(level) + " needs copies started");
  }
  set_num_threads(config.run.threads);
  const int L = config.train.seq_len;
  const std::vector<UnitPlan> plans = plan_units(config.model, L);
  const int U = static_cast<int>(plans.size());

  // One chain of single-unit models per tp size: rank 0 of a group of `tp`, whose all-reduces
  // sum over itself only.
  std::vector<std::vector<std::unique_ptr<StageModel>>> chains;
  for (int tp : options.tp_sizes) {
    const std::string bad_tp = tp >= 1 ? tp_problem(config, tp) : "tp < 1";
    require(bad_tp.empty(), "plan.tp_sizes: " + bad_tp);
    TensorParallel shard;
    if (tp > 1) {
      int initialized = 0;
      MPI_Initialized(&initialized);
      require(initialized, "calibrating tensor-parallel shards needs MPI initialised");
      shard.size = tp;
      shard.comm = make_mpi_communicator(MPI_COMM_SELF);
      if (config.train.matformer != Matformer::Off)
        shard.nested_granularities = config.model.ffn_granularities;
    }
    chains.emplace_back();
    for (int u = 0; u < U; ++u) {
      chains.back().push_back(std::make_unique<StageModel>(config.model, L, u, u + 1, shard));
      chains.back().back()->params().init_all(config.train.seed);
    }
  }
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };

  // Samples per setting (concurrency level × tp × micro-batch) and unit.
  struct Samples {
    std::vector<std::vector<double>> forward, backward, update;  // [unit][repeat]
  };
  const size_t T = options.tp_sizes.size(), M = micro_batches.size();
  std::vector<Samples> samples(options.concurrency.size() * T * M);
  for (Samples& s : samples) s.forward = s.backward = s.update = std::vector<std::vector<double>>(U);
  const StepContext ctx = calibration_context(config);
  std::vector<std::vector<int32_t>> tokens;
  for (int mb : micro_batches) tokens.push_back(calibration_tokens(config, mb));

  // One forward of every unit, the backward in reverse, then the update (zeroing, the norm and
  // AdamW, as a step does them per rank: it also evicts the caches the next pass would
  // otherwise find warm).
  auto pass = [&](std::vector<std::unique_ptr<StageModel>>& units, size_t m, Samples* keep) {
    Slot slot;
    slot.ctx = &ctx;
    slot.tokens = tokens[m].data();
    slot.batch = micro_batches[m];
    Tensor a, b;
    for (int u = 0; u < U; ++u) {
      const auto t0 = Clock::now();
      units[u]->forward(slot, a, b);
      if (keep) keep->forward[u].push_back(since(t0));
      std::swap(a, b);
    }
    Tensor g, h;
    for (int u = U - 1; u >= 0; --u) {
      const auto t0 = Clock::now();
      units[u]->backward(slot, g, h);
      if (keep) keep->backward[u].push_back(since(t0));
      std::swap(g, h);
    }
    for (int u = 0; u < U; ++u) {
      ParamStore& store = units[u]->params();
      const auto t0 = Clock::now();
      store.zero_grads();
      const double norm = std::sqrt(grad_sum_squares(store));
      clip_gradients(store, norm, config.train.grad_clip);
      adamw_update(store, config.train, 1, config.train.lr);
      if (keep) keep->update[u].push_back(since(t0));
    }
  };
  const auto start = Clock::now();
  double reported = 0;
  for (int r = 0; r <= options.repeats; ++r) {  // r = 0 warms up (allocations, caches)
    for (size_t c = 0; c < options.concurrency.size(); ++c) {
      if (copies) copies->run(options.concurrency[c] - 1);
      for (size_t t = 0; t < T; ++t)
        for (size_t m = 0; m < M; ++m)
          pass(chains[t], m, r > 0 ? &samples[(c * T + t) * M + m] : nullptr);
    }
    const double elapsed = since(start);
    if (elapsed - reported >= 5 && r < options.repeats) {  // progress on stderr: stdout is the table
      reported = elapsed;
      std::fprintf(stderr, "calibration: repeat %d of %d, %.0f s, ETA %.0f s\n", r,
                   options.repeats, elapsed, elapsed / (r + 1) * (options.repeats - r));
    }
  }
  if (copies) copies->run(0);

  Calibration out;
  out.model_key = calibration_model_key(config);
  out.threads = num_threads();
  out.statistic = options.statistic;
  auto pick = [&options](const std::vector<double>& v) {
    return options.statistic == "min" ? *std::min_element(v.begin(), v.end()) : median(v);
  };
  for (size_t c = 0; c < options.concurrency.size(); ++c)
    for (size_t t = 0; t < T; ++t)
      for (size_t m = 0; m < M; ++m) {
        const Samples& s = samples[(c * T + t) * M + m];
        for (int u = 0; u < U; ++u)
          out.units.push_back({plans[u].name, micro_batches[m], options.concurrency[c],
                               options.tp_sizes[t], pick(s.forward[u]), pick(s.backward[u]),
                               pick(s.update[u])});
      }
  return out;
}

void write_calibration(const std::string& path, const Calibration& c) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  std::ofstream out(path);
  require(out.good(), "cannot write calibration file '" + path + "'");
  out << "# hourglass plan calibration: seconds per micro-batch, from "
         "`hourglass plan --calibrate`\n";
  out << "model " << c.model_key << "\n";
  out << "threads " << c.threads << "\n";
  out << "statistic " << c.statistic << "\n";
  out << "# unit name, micro_batch, copies running at once, tp, forward, backward, update (zero "
         "+ norm + AdamW)\n";
  char buf[64];
  for (const UnitTiming& t : c.units) {
    out << "unit " << t.name << " " << t.micro_batch << " " << t.concurrency << " " << t.tp;
    for (double v : {t.forward, t.backward, t.update}) {
      std::snprintf(buf, sizeof buf, " %.9g", v);
      out << buf;
    }
    out << "\n";
  }
}

Calibration read_calibration(const std::string& path) {
  std::ifstream in(path);
  require(in.good(), "cannot read calibration file '" + path +
                         "' (plan.calibration); make one with hourglass plan --calibrate");
  Calibration c;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty() || line.front() == '#') continue;
    std::istringstream words(line);
    std::string kind;
    words >> kind;
    if (kind == "model") {
      c.model_key = trim(line.substr(5));
    } else if (kind == "threads") {
      words >> c.threads;
    } else if (kind == "statistic") {
      words >> c.statistic;
    } else if (kind == "unit") {
      UnitTiming t;
      words >> t.name >> t.micro_batch >> t.concurrency >> t.tp >> t.forward >> t.backward >>
          t.update;
      require(!words.fail() && t.micro_batch >= 1 && t.concurrency >= 1 && t.tp >= 1,
              "calibration file " + path + " line " + std::to_string(number) +
                  ": expected `unit NAME MICRO_BATCH CONCURRENCY TP FORWARD BACKWARD UPDATE`");
      c.units.push_back(t);
    } else {
      throw UsageError("calibration file " + path + " line " + std::to_string(number) +
                       ": unknown line '" + line + "'");
    }
  }
  require(!c.units.empty(), "calibration file " + path + " has no unit timings");
  return c;
}

// ---- communication costs ----

double ring_allreduce_seconds(double bytes, int n, double bandwidth, double latency) {
  if (n <= 1) return 0;
  return 2.0 * (n - 1) / n * bytes / bandwidth + 2.0 * (n - 1) * latency;
}

double allreduce_seconds(double bytes, int n, double bandwidth, double latency, double calls,
                         double call_latency) {
  if (n <= 1) return 0;
  const double per_call =
      call_latency >= 0 ? call_latency : 2.0 * std::ceil(std::log2(double(n))) * latency;
  return ring_allreduce_seconds(bytes, n, bandwidth, 0) + calls * per_call;
}

GradientSync overlapped_gradient_sync(const std::vector<double>& backward,
                                      const std::vector<double>& bytes, double bucket_bytes,
                                      const AllReduceCost& cost) {
  require(backward.size() == bytes.size() && bucket_bytes > 0,
          "overlapped_gradient_sync: one backward time and byte count per unit, bucket > 0");
  GradientSync out;
  double now = 0;      // since the final backward began, including what the buckets add to it
  double channel = 0;  // when the previous bucket's all-reduce ends
  double open = 0;     // bytes in the bucket being filled
  auto launch = [&](double size, bool in_backward) {
    const double copies = 2 * cost.copy_seconds_per_byte * size;  // into the bucket and back
    const double work = cost.seconds_per_byte * size;
    out.seconds += cost.latency + work + copies;
    ++out.calls;
    if (in_backward) {
      const double on_rank = copies + (cost.on_host ? work : 0);
      now += on_rank;
      out.during_backward += on_rank;
      channel = std::max(now, channel) + cost.latency + (cost.on_host ? 0 : work);
    } else {
      channel = std::max(now, channel) + cost.latency + work + copies;
    }
  };
  const size_t n = backward.size();
  for (size_t i = 0; i < n; ++i) {
    now += backward[i];
    // A unit larger than a bucket fills several, all ready when it is done (the trainer never
    // splits a tensor, so its buckets may be larger by a tensor: at most one call fewer).
    for (open += bytes[i]; open >= bucket_bytes; open -= bucket_bytes)
      launch(bucket_bytes, i + 1 < n);
  }
  if (open > 1e-9 * bucket_bytes) launch(open, false);  // not a rounding remainder
  out.exposed = std::max(0.0, channel - now);
  return out;
}

// ---- layouts ----

namespace {

// One stage's (or virtual stage's) costs at one micro-batch size and tp (plan_layouts).
struct StageCosts {
  double forward = 0, backward = 0;  // seconds per micro-batch, tp all-reduces included
  double tp_time = 0;                // seconds of tp all-reduces per micro-batch
  double update = 0;                 // the optimizer on its parameters
  ChunkMemory memory;                // parameters held, activations (trainer/memory_estimate.h)
  // The final backward unit by unit, last unit first, and each unit's gradient bytes.
  std::vector<double> unit_backward, unit_grad_bytes;
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
  double state_bytes = 0;       // per parameter
  double grad_bytes = 0;        // all-reduced per parameter
  double optimizer_bytes = 0;   // memory traffic per parameter update
  double intra_latency = 0;     // cluster.intra_latency, else cluster.latency
  bool recompute = false;       // blocks recompute their forward in the backward
  double bucket_bytes = 0;      // the dp all-reduce bucket
  int granularity_runs = 1;     // runs of each micro-batch: one per FFN width when joint
  std::unique_ptr<CalibrationIndex> calibration;  // null: the cost model
  int world = 0;                                  // W
  int busy_per_node = 0;  // ranks sharing a node's memory system (calibration concurrency)
  double model_flops_per_step = 0;
  int64_t params = 0;

  PlanInputs(const Config& c, const ClusterSpec& cl, const PlanOptions& o)
      : config(c), cluster(cl), options(o) {
    seq_len = config.train.seq_len;
    batch = config.train.batch;
    plans = plan_units(config.model, seq_len);
    infos = unit_infos(plans);
    units = static_cast<int>(plans.size());
    const bool bf16 = options.precision == "bf16";
    value_bytes = bf16 ? 2 : 4;
    state_bytes = bf16 ? 18 : 16;
    grad_bytes = bf16 ? 2 : 4;
    optimizer_bytes = bf16 ? 40 : 36;
    intra_latency = cluster.intra_latency < 0 ? cluster.latency : cluster.intra_latency;
    recompute = recompute_blocks(config.train);
    // The trainer's bucket (parallel.grad_bucket_mb, MiB), unless plan.bucket_mb (MiB) overrides.
    bucket_bytes = options.bucket_mb > 0 ? options.bucket_mb * 1024 * 1024
                                         : double(grad_bucket_bytes(config.parallel));
    granularity_runs = config.train.matformer == Matformer::Joint
                           ? static_cast<int>(config.model.ffn_granularities.size())
                           : 1;
    if (!options.calibration.empty()) read_calibration_index();
    world = options.ranks > 0 ? options.ranks : cluster.devices();
    for (const UnitPlan& p : plans) {
      model_flops_per_step += p.flops * batch;
      params += p.params;
    }
    busy_per_node = std::min(world, cluster.devices_per_node);
  }

  // A calibration measured for another model or seq_len would price the wrong units: refuse it.
  void read_calibration_index() {
    const Calibration c = read_calibration(options.calibration);
    require(c.model_key == calibration_model_key(config),
            "calibration file " + options.calibration +
                " was measured for another model or seq_len:\n  file:   " + c.model_key +
                "\n  config: " + calibration_model_key(config) +
                "\nRerun hourglass plan --calibrate with this configuration.");
    calibration = std::make_unique<CalibrationIndex>();
    for (const UnitTiming& t : c.units) calibration->by_unit[t.name].push_back(t);
  }
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
  std::vector<GradientSync> gradient_syncs(const std::vector<StageCosts>& stage, int v) const;
  SimulationCosts simulation_costs(const std::vector<StageCosts>& stage,
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

double GridCosts::link_seconds(double bytes, bool intra) const {  // one pipeline message
  return cluster_.message_overhead + (intra ? in_.intra_latency + bytes / cluster_.intra_bandwidth
                                            : cluster_.latency + bytes / cluster_.inter_bandwidth);
}

// `back_to_back`: the gradient all-reduce's calls follow each other, so after the first the ranks
// arrive together (cluster.allreduce_latency when measured); a tp all-reduce follows compute, which
// never ends at once on every rank, so it pays the link latency.
double GridCosts::allreduce(double bytes, int n, bool intra, double calls,
                            bool back_to_back) const {
  const double link = intra ? cluster_.intra_bandwidth : cluster_.inter_bandwidth;
  return allreduce_seconds(bytes, n,
                           cluster_.allreduce_bandwidth > 0 ? cluster_.allreduce_bandwidth : link,
                           intra ? in_.intra_latency : cluster_.latency, calls,
                           back_to_back ? cluster_.allreduce_latency : -1);
}

// pp · v (virtual) stages: parallel.stages applies to the config's own pp and virtual_stages only
// (it counts units per virtual stage).
const std::vector<int>& GridCosts::partition(int v) {
  const ParallelConfig& parallel = in_.config.parallel;
  auto [it, added] = partitions_.try_emplace({pp_, v});
  if (added)
    it->second =
        partition_units(in_.infos, pp_ * v, static_cast<int>(in_.config.model.stacks.size()),
                        pp_ == parallel.pp && v == parallel.virtual_stages ? parallel.stages : "");
  return it->second;
}

// One unit's share of a stage at micro-batch size mb: its compute (calibrated or from FLOPs), its
// tp all-reduces, its parameters and activations.
void GridCosts::add_unit(StageCosts& c, const UnitPlan& p, int mb) const {
  const ModelConfig& model = in_.config.model;
  const bool sharded = tp_sharded(model, p);
  const double split = sharded ? tp_ : 1;
  double compute_split = split;  // 1 when the calibration timed this tp's shard
  double f = 0, b = 0, upd = 0;
  if (in_.calibration) {
    const auto [t, shard_timed] = in_.calibration->nearest(p.name, mb, in_.busy_per_node, tp_);
    const double scale = double(mb) / t->micro_batch;
    f = t->forward * scale;
    b = t->backward * scale;
    upd = t->update;
    if (shard_timed) compute_split = 1;
  } else {
    const double seconds = p.flops * mb / (cluster_.device_flops * cluster_.efficiency);
    f = seconds / 3;
    b = seconds * 2 / 3;
    if (cluster_.memory_bandwidth > 0)
      upd = p.params * in_.optimizer_bytes / cluster_.memory_bandwidth;
  }
  f = f / compute_split + cluster_.unit_overhead;
  b = b / compute_split + cluster_.unit_overhead;
  double ar_forward = 0;  // the unit's tp all-reduces in its forward
  if (sharded && tp_ > 1) {
    const TpAllReduceRows rows = tp_allreduce_rows(model, p);
    const bool tp_intra = cluster_.devices_per_node % tp_ == 0;
    auto cost = [&](int64_t r) {
      return allreduce(double(mb) * r * model.d_model * in_.value_bytes, tp_, tp_intra, 1, false);
    };
    ar_forward = 2 * cost(rows.output);  // after the attention output and the FFN output
    const double ar_backward = 2 * cost(rows.output) + (rows.input ? cost(rows.input) : 0);
    f += ar_forward;
    b += ar_backward;
    c.tp_time += ar_forward + ar_backward;
  }
  const bool recomputed = in_.recompute && p.kind == UnitKind::Block;
  if (recomputed) {
    b += f;  // the forward again, all-reduces included
    c.tp_time += ar_forward;
  }
  c.forward += f;
  c.backward += b;
  c.update += upd / compute_split;
  add_unit_memory(c.memory, model, p, mb, tp_, in_.recompute, in_.value_bytes);
  c.unit_backward.insert(c.unit_backward.begin(), b);
  c.unit_grad_bytes.insert(c.unit_grad_bytes.begin(), p.params / split * in_.grad_bytes);
}

// Units [u0, u1) as one stage (or virtual stage) at micro-batch size mb.
StageCosts GridCosts::range_costs(int u0, int u1, int mb) const {
  StageCosts c;
  for (int u = u0; u < u1; ++u) add_unit(c, in_.plans[u], mb);
  return c;
}

// Per rank: the replicas' gradient sum, overlapped with the final backward (it does not depend on
// the schedule: the final backward is the same op under all of them, micro-batch m - 1 of chunk 0).
// Interleaved, each chunk's final backward starts the buckets of its units, chunk v - 1 first
// (pipeline_runtime.cpp); conservatively, the buckets of chunks v - 1 .. 1 are taken as ready only
// when chunk 0's final backward begins (they are ready earlier, between other ops), so only chunk
// 0's backward hides the all-reduce.
std::vector<GradientSync> GridCosts::gradient_syncs(const std::vector<StageCosts>& stage,
                                                    int v) const {
  std::vector<GradientSync> sync(pp_);
  for (int s = 0; s < pp_ && dp_ > 1; ++s) {
    const bool intra = node(0, s) == node(dp_ - 1, s);
    AllReduceCost cost;
    cost.latency = allreduce(0, dp_, intra, 1, true);
    cost.seconds_per_byte = allreduce(1, dp_, intra, 0, true);
    if (cluster_.memory_bandwidth > 0) cost.copy_seconds_per_byte = 2 / cluster_.memory_bandwidth;
    cost.on_host = cluster_.host_collectives != 0;
    std::vector<double> backward, bytes;  // the rank's units, backward order
    for (int c = v - 1; c >= 0; --c) {
      const StageCosts& chunk = stage[c * pp_ + s];
      for (size_t i = 0; i < chunk.unit_backward.size(); ++i) {
        backward.push_back(c == 0 ? chunk.unit_backward[i] : 0.0);
        bytes.push_back(chunk.unit_grad_bytes[i]);
      }
    }
    sync[s] = overlapped_gradient_sync(backward, bytes, in_.bucket_bytes, cost);
  }
  return sync;
}

// What the simulator charges: each op's compute and each message's link. The returned costs read
// `stage` and `sync`, which must outlive them.
SimulationCosts GridCosts::simulation_costs(const std::vector<StageCosts>& stage,
                                            const std::vector<GradientSync>& sync,
                                            const std::vector<int>& first,
                                            const std::vector<SkipEdge>& skips, int mb,
                                            int m) const {
  const ModelConfig& model = in_.config.model;
  const int V = static_cast<int>(stage.size());
  SimulationCosts costs;
  // The final backward also carries what the gradient buckets add to it.
  costs.compute = [&stage, &sync, pp = pp_, m](int s, const Instruction& in) {
    const StageCosts& c = stage[in.chunk * pp + s];
    if (in.op == Op::Forward) return c.forward;
    return c.backward + (in.chunk == 0 && in.micro_batch == m - 1 ? sync[s].during_backward : 0.0);
  };
  // Virtual stage k runs on rank k mod pp: boundary k is a message between those ranks.
  for (int k = 0; k + 1 < V; ++k) {
    const double bytes =
        double(mb) * in_.plans[first[k + 1]].rows * model.d_model * in_.value_bytes;
    costs.activation_message.push_back(link_seconds(bytes, same_node(k % pp_, (k + 1) % pp_)));
  }
  for (const SkipEdge& e : skips) {
    if (e.producer_stage % pp_ == e.consumer_stage % pp_) continue;  // one rank: no message
    int64_t rows = 0;
    for (const UnitPlan& p : in_.plans)
      if (p.kind == UnitKind::Down && p.stack == e.level) rows = p.rows;
    if (static_cast<int>(costs.skip_message.size()) <= e.level)
      costs.skip_message.resize(e.level + 1);
    costs.skip_message[e.level] =
        link_seconds(double(mb) * rows * model.d_model * in_.value_bytes,
                     same_node(e.producer_stage % pp_, e.consumer_stage % pp_));
  }
  return costs;
}

// The slowest rank's gradient sync, optimizer, tp time and memory into lp; returns when the last
// rank's pipeline and exposed gradient sync end.
double GridCosts::add_rank_totals(LayoutPlan& lp, const std::vector<StageCosts>& stage,
                                  const std::vector<GradientSync>& sync,
                                  const SimulationResult& sim, int v, int m) const {
  double end = 0;
  for (int s = 0; s < pp_; ++s) {
    // The rank's chunks; sim.max_alive counts its (micro-batch, chunk) pairs.
    double update = 0, tp_time = 0;
    std::vector<ChunkMemory> chunks;
    for (int c = 0; c < v; ++c) {
      const StageCosts& chunk = stage[c * pp_ + s];
      chunks.push_back(chunk.memory);
      update += chunk.update;
      tp_time += chunk.tp_time;
    }
    lp.dp_seconds = std::max(lp.dp_seconds, sync[s].exposed);
    lp.dp_total_seconds = std::max(lp.dp_total_seconds, sync[s].seconds);
    lp.optimizer_seconds = std::max(lp.optimizer_seconds, update);
    end = std::max(end, sim.finish[s] + sync[s].exposed);
    lp.tp_seconds = std::max(lp.tp_seconds, tp_time * m);
    const RankMemory held = rank_memory(chunks, sim.max_alive[s], in_.state_bytes);
    const double memory = held.total() + cluster_.memory_reserve;
    if (memory > lp.memory_bytes) {
      lp.memory_bytes = memory;
      lp.param_bytes = held.param_bytes;
      lp.activation_bytes = held.activations();
    }
  }
  return end;
}

// One layout: the schedule `kind` with v chunks per rank (1 unless interleaved) on pp · v virtual
// stages; rank s holds virtual stages c·pp + s as its chunks c (rank_chunks).
LayoutPlan GridCosts::evaluate(ScheduleKind kind, int v, int mb, int m) {
  const int V = pp_ * v;
  const std::vector<int>& first = partition(v);
  const std::vector<SkipEdge> skips = skip_edges(in_.infos, first);
  std::vector<StageCosts> stage(V);
  for (int k = 0; k < V; ++k) stage[k] = range_costs(first[k], first[k + 1], mb);
  const std::vector<GradientSync> sync = gradient_syncs(stage, v);
  const SimulationCosts costs = simulation_costs(stage, sync, first, skips, mb, m);

  LayoutPlan lp;
  lp.dp = dp_;
  lp.pp = pp_;
  lp.tp = tp_;
  lp.micro_batch = mb;
  lp.micro_batches = m;
  lp.schedule = kind;
  lp.virtual_stages = v;
  const auto lists = make_schedule(kind, PipelineLayout{pp_, m, skips, v});
  const SimulationResult sim = simulate(lists, costs);
  if (!sim.ok) throw std::logic_error("plan: simulation failed: " + sim.error);
  lp.pipeline_seconds = sim.makespan;
  lp.bubble = sim.bubble;
  lp.theory_bubble = theoretical_bubble(pp_, m, v);
  const double end = add_rank_totals(lp, stage, sync, sim, v, m);
  // The loss and grad-norm all-reduces: two latency-bound calls over the world.
  const int W = in_.world;
  const double collectives = allreduce_seconds(
      0, W, 1, std::max(cluster_.latency, in_.intra_latency), 2, cluster_.allreduce_latency);
  lp.step_seconds = end + lp.optimizer_seconds + collectives;
  lp.tokens_per_second = double(in_.batch) * in_.seq_len / lp.step_seconds;
  lp.mfu = in_.model_flops_per_step / (lp.step_seconds * W * cluster_.device_flops);
  if (lp.memory_bytes > cluster_.device_memory) {
    lp.fits = false;
    lp.note = "needs " + si(lp.memory_bytes, "B") + " > " + si(cluster_.device_memory, "B");
  }
  return lp;
}

// Why tp cannot run this model on this cluster, or "".
std::string tp_skip_reason(const Config& config, int tp, int devices_per_node) {
  const std::string bad_tp = tp_problem(config, tp);
  if (!bad_tp.empty()) return "tp " + std::to_string(tp) + ": " + bad_tp;
  if (tp > devices_per_node)
    return "tp " + std::to_string(tp) + ": larger than a node (" +
           std::to_string(devices_per_node) + " devices)";
  return "";
}

// Why the grid `layout` ("dp .. pp .. tp ..") cannot split this model and batch, or "".
std::string grid_skip_reason(const std::string& layout, const PlanInputs& in, int dp, int pp) {
  if (pp > in.units)
    return layout + ": more stages than the model's " + std::to_string(in.units) + " units";
  if (in.batch % dp != 0)
    return layout + ": train.batch " + std::to_string(in.batch) + " is not a multiple of dp";
  return "";
}

// Why interleaving with v chunks per rank cannot run m micro-batches on this grid, or "".
std::string interleave_skip_reason(const std::string& layout, const PlanInputs& in, int pp, int v,
                                   int mb, int m) {
  const std::string what = layout + " interleaved x" + std::to_string(v);
  if (pp * v > in.units)
    return what + ": pp x virtual stages = " + std::to_string(pp * v) +
           " virtual stages, more than the model's " + std::to_string(in.units) + " units";
  if (m % pp != 0)
    return what + " micro_batch " + std::to_string(mb) + ": " + std::to_string(m) +
           (m == 1 ? " micro-batch" : " micro-batches") +
           " per step, not a multiple of pp = " + std::to_string(pp);
  return "";
}

// Micro-batch sizes to try for a replica's `per_replica` sequences: the divisors that
// plan.micro_batches and plan.max_micro_batch allow.
std::vector<int> micro_batch_candidates(const PlanOptions& options, int per_replica) {
  std::vector<int> candidates;
  for (int mb : divisors(per_replica)) {
    if (!options.micro_batches.empty() &&
        std::find(options.micro_batches.begin(), options.micro_batches.end(), mb) ==
            options.micro_batches.end())
      continue;
    if (options.max_micro_batch && mb > options.max_micro_batch) continue;
    candidates.push_back(mb);
  }
  return candidates;
}

// Every (micro-batch, schedule, chunks) the grid can run, costed into result.layouts; those that
// cannot interleave into result.skipped, each reason once.
void add_grid_layouts(GridCosts& grid, const PlanInputs& in, const std::string& layout, int dp,
                      int pp, PlanResult& result) {
  // Chunks per rank to try for interleaved: plan.virtual_stages, else parallel.virtual_stages
  // when the config interleaves, else 2.
  const std::vector<int> virtual_counts =
      !in.options.virtual_stages.empty()
          ? in.options.virtual_stages
          : std::vector<int>{std::max(2, in.config.parallel.virtual_stages)};
  for (int mb : micro_batch_candidates(in.options, in.batch / dp)) {
    const int m = in.batch / dp / mb * in.granularity_runs;
    for (const std::string& schedule_text : in.options.schedules) {
      const ScheduleKind kind =
          pp == 1 ? ScheduleKind::OneFOneB : schedule_kind(schedule_text);
      const std::vector<int> chunk_counts =
          kind == ScheduleKind::Interleaved ? virtual_counts : std::vector<int>{1};
      for (int v : chunk_counts) {
        if (kind == ScheduleKind::Interleaved) {
          const std::string why = interleave_skip_reason(layout, in, pp, v, mb, m);
          if (!why.empty()) {
            if (std::find(result.skipped.begin(), result.skipped.end(), why) ==
                result.skipped.end())
              result.skipped.push_back(why);
            continue;
          }
        }
        result.layouts.push_back(grid.evaluate(kind, v, mb, m));
      }
      if (pp == 1) break;  // one schedule: with one stage they are the same list
    }
  }
}

}  // namespace

PlanResult plan_layouts(const Config& config, const ClusterSpec& cluster,
                        const PlanOptions& options) {
  const PlanInputs in(config, cluster, options);
  PlanResult result;
  result.world = in.world;
  result.model_flops_per_step = in.model_flops_per_step;
  result.params = in.params;
  const int W = in.world;
  Partitions partitions;
  for (int tp : divisors(W)) {
    if (options.tp && tp != options.tp) continue;
    const std::string bad_tp = tp_skip_reason(config, tp, cluster.devices_per_node);
    if (!bad_tp.empty()) {
      result.skipped.push_back(bad_tp);
      continue;
    }
    for (int pp : divisors(W / tp)) {
      if (options.pp && pp != options.pp) continue;
      const int dp = W / tp / pp;
      if (options.dp && dp != options.dp) continue;
      const std::string layout =
          "dp " + std::to_string(dp) + " pp " + std::to_string(pp) + " tp " + std::to_string(tp);
      const std::string bad_grid = grid_skip_reason(layout, in, dp, pp);
      if (!bad_grid.empty()) {
        result.skipped.push_back(bad_grid);
        continue;
      }
      GridCosts grid(in, partitions, dp, pp, tp);
      add_grid_layouts(grid, in, layout, dp, pp, result);
    }
  }
  // Layouts that fit first, fastest first; ties keep the order they were tried in.
  std::stable_sort(result.layouts.begin(), result.layouts.end(),
                   [](const LayoutPlan& a, const LayoutPlan& b) {
                     if (a.fits != b.fits) return a.fits;
                     return a.step_seconds < b.step_seconds;
                   });
  return result;
}

namespace {

// The table's schedule column, 6 characters wide: "-" for one stage, "int×v" for interleaved.
std::string schedule_label(const LayoutPlan& l) {
  if (l.pp == 1) return "-     ";
  if (l.schedule == ScheduleKind::Interleaved) {
    const std::string label = "int×" + std::to_string(l.virtual_stages);  // × is 2 bytes, 1 column
    return label + std::string(7 - label.size(), ' ');
  }
  char buf[16];
  std::snprintf(buf, sizeof buf, "%-6s", schedule_name(l.schedule));
  return buf;
}

void print_csv(const PlanResult& r) {
  std::printf(
      "dp,pp,tp,micro_batch,micro_batches,schedule,virtual_stages,step_seconds,pipeline_seconds,dp_"
      "seconds,"
      "dp_total_seconds,optimizer_seconds,tp_seconds,bubble,theory_bubble,memory_bytes,"
      "param_bytes,activation_bytes,tokens_per_second,mfu,fits\n");
  for (const LayoutPlan& l : r.layouts)
    std::printf(
        "%d,%d,%d,%d,%d,%s,%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.4f,%.4f,%.6g,%.6g,%.6g,%.6g,%.4f,%"
        "d\n",
        l.dp, l.pp, l.tp, l.micro_batch, l.micro_batches, schedule_name(l.schedule),
        l.virtual_stages, l.step_seconds, l.pipeline_seconds, l.dp_seconds, l.dp_total_seconds,
        l.optimizer_seconds, l.tp_seconds, l.bubble, l.theory_bubble, l.memory_bytes, l.param_bytes,
        l.activation_bytes, l.tokens_per_second, l.mfu, l.fits ? 1 : 0);
}

void print_table(const PlanResult& r, const Config& config, const ClusterSpec& cluster,
                 const PlanOptions& options) {
  std::printf(
      "model: %s parameters, %s per step (cost model, forward + backward), "
      "batch %d x seq_len %d = %d tokens per step\n",
      si(double(r.params), "").c_str(), si(r.model_flops_per_step, "FLOP").c_str(),
      config.train.batch, config.train.seq_len, config.train.batch * config.train.seq_len);
  std::printf(
      "cluster: %d node(s) x %d devices = %d ranks planned; %s peak per device (the MFU "
      "denominator), %s memory; links %s/s intra, %s/s inter, latency %s\n",
      cluster.nodes, cluster.devices_per_node, r.world, si(cluster.device_flops, "FLOP/s").c_str(),
      si(cluster.device_memory, "B").c_str(), si(cluster.intra_bandwidth, "B").c_str(),
      si(cluster.inter_bandwidth, "B").c_str(), seconds_text(cluster.latency).c_str());
  if (options.calibration.empty())
    std::printf("compute: cost model at %.0f%% of peak, %s per unit pass; precision %s\n",
                100 * cluster.efficiency, seconds_text(cluster.unit_overhead).c_str(),
                options.precision.c_str());
  else
    std::printf("compute: measured unit times from %s; precision %s\n", options.calibration.c_str(),
                options.precision.c_str());
  if (recompute_blocks(config.train))
    std::printf(
        "recompute: blocks (each block's forward runs again in its backward; per micro-batch in "
        "flight a block keeps only its input)\n");
  if (config.train.matformer == Matformer::Joint)
    std::printf(
        "note: matformer joint runs every micro-batch once per width; compute is "
        "counted at full width (an over-estimate)\n");
  int feasible = 0;
  for (const LayoutPlan& l : r.layouts) feasible += l.fits;
  std::printf("%zu layouts evaluated, %d fit in memory\n\n", r.layouts.size(), feasible);
  std::printf("%4s %5s %4s %4s %5s %5s %-6s %11s %11s %9s %9s %9s %9s %7s %7s %10s %6s\n", "rank",
              "dp", "pp", "tp", "mb", "m", "sched", "step", "tokens/s", "pipeline", "(tp-ar)",
              "dp-ar", "optim", "bubble", "theory", "mem/rank", "MFU");
  const int rows = options.top > 0 ? std::min<int>(options.top, static_cast<int>(r.layouts.size()))
                                   : static_cast<int>(r.layouts.size());
  for (int i = 0; i < rows; ++i) {
    const LayoutPlan& l = r.layouts[i];
    std::printf(
        "%4d %5d %4d %4d %5d %5d %s %11s %11.4g %9s %9s %9s %9s %7.3f %7.3f %10s %5.1f%%%s\n",
        i + 1, l.dp, l.pp, l.tp, l.micro_batch, l.micro_batches, schedule_label(l).c_str(),
        seconds_text(l.step_seconds).c_str(), l.tokens_per_second,
        seconds_text(l.pipeline_seconds).c_str(), seconds_text(l.tp_seconds).c_str(),
        seconds_text(l.dp_seconds).c_str(), seconds_text(l.optimizer_seconds).c_str(), l.bubble,
        l.theory_bubble, si(l.memory_bytes, "B").c_str(), 100 * l.mfu,
        l.fits ? "" : ("  (does not fit: " + l.note + ")").c_str());
  }
  if (feasible == 0)
    std::printf("\nno layout fits in %s per device\n", si(cluster.device_memory, "B").c_str());
  std::printf(
      "\nstep = the slowest rank's pipeline (compute, the tp all-reduces inside it shown "
      "in brackets, messages) + what the dp gradient all-reduce adds after the final backward "
      "(in %s buckets, started during it) + optimizer\n",
      si(options.bucket_mb > 0 ? options.bucket_mb * 1024 * 1024
                               : double(grad_bucket_bytes(config.parallel)),
         "B")
          .c_str());
  for (const std::string& s : r.skipped) std::printf("not evaluated: %s\n", s.c_str());
}

}  // namespace

int plan_main(const std::vector<std::string>& args) {
  ClusterSpec cluster;
  PlanOptions options;
  bool calibrate_mode = false;
  std::vector<std::string> config_args;
  std::vector<std::pair<std::string, std::string>> flags;  // (--cluster.x | --plan.x, value)
  std::string cluster_file;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--calibrate") {
      calibrate_mode = true;
      continue;
    }
    if (!a.starts_with("--cluster") && !a.starts_with("--plan.")) {
      config_args.push_back(a);
      continue;
    }
    std::string key = a, value;
    if (const size_t eq = a.find('='); eq != std::string::npos) {
      key = a.substr(0, eq);
      value = a.substr(eq + 1);
    } else {
      require(i + 1 < args.size(), a + " needs a value");
      value = args[++i];
    }
    if (key == "--cluster")
      cluster_file = value;
    else
      flags.emplace_back(key, value);
  }
  if (!cluster_file.empty()) read_cluster_file(cluster_file, cluster, options);
  for (const auto& [key, value] : flags) {
    if (key.starts_with("--cluster."))
      apply_option(cluster_keys(cluster), "cluster", key.substr(10), value, " on the command line");
    else if (key.starts_with("--plan."))
      apply_option(plan_keys(options), "plan", key.substr(7), value, " on the command line");
    else
      throw UsageError("unknown option " + key +
                       ": use --cluster FILE, --cluster.key value or "
                       "--plan.key value");
  }
  validate(cluster, options);
  const Config config = parse_config(config_args);

  if (calibrate_mode) {
    const std::string path =
        options.calibration.empty()
            ? (std::filesystem::path(config.run.dir) / "calibration.txt").string()
            : options.calibration;
    const std::vector<int> sizes = options.micro_batches.empty()
                                       ? std::vector<int>{config.train.micro_batch}
                                       : options.micro_batches;
    for (int t : options.tp_sizes) {
      const std::string bad = t >= 1 ? tp_problem(config, t) : "tp < 1";
      require(bad.empty(), "plan.tp_sizes: " + bad);
    }
    for (int copies : options.concurrency)
      require(copies >= 1, "plan.concurrency entries must be at least 1");
    const int most = *std::max_element(options.concurrency.begin(), options.concurrency.end());
    // The copies are forked before MPI starts (a forked MPI process is undefined behaviour).
    CalibrationCopies copies(config, sizes, most - 1);
    int mpi_started = 0;
    MPI_Initialized(&mpi_started);
    const bool start_mpi =
        !mpi_started && *std::max_element(options.tp_sizes.begin(), options.tp_sizes.end()) > 1;
    if (start_mpi) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    }
    const Calibration c = calibrate(config, sizes, options, &copies);
    if (start_mpi) MPI_Finalize();
    write_calibration(path, c);
    std::printf("calibration: %zu unit timings (%d thread(s), %s of %d) -> %s\n", c.units.size(),
                c.threads, c.statistic.c_str(), options.repeats, path.c_str());
    std::printf("%-24s %5s %7s %4s %12s %12s %12s\n", "unit", "mb", "copies", "tp", "forward",
                "backward", "update");
    for (const UnitTiming& t : c.units)
      std::printf("%-24s %5d %7d %4d %12s %12s %12s\n", t.name.c_str(), t.micro_batch,
                  t.concurrency, t.tp, seconds_text(t.forward).c_str(),
                  seconds_text(t.backward).c_str(), seconds_text(t.update).c_str());
    return 0;
  }

  const PlanResult result = plan_layouts(config, cluster, options);
  if (options.format == "csv")
    print_csv(result);
  else
    print_table(result, config, cluster, options);
  return 0;
}

}  // namespace hg
