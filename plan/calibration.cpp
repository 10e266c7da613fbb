#include "plan/calibration.h"

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
#include <limits>
#include <memory>
#include <sstream>

#include "core/error.h"
#include "core/parallel_for.h"
#include "layers/weight_gradients.h"
#include "model/stage_model.h"
#include "model/tensor_parallel.h"
#include "model/units.h"
#include "parallel/communicator.h"
#include "trainer/optimizer.h"
#include "trainer/pipeline_runtime.h"

namespace hg {
namespace {

// `text` without leading and trailing blanks (spaces, tabs, carriage returns).
std::string trim(const std::string& text) {
  const size_t a = text.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  const size_t b = text.find_last_not_of(" \t\r");
  return text.substr(a, b - a + 1);
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

}  // namespace

std::pair<const UnitTiming*, bool> CalibrationIndex::nearest(const std::string& unit,
                                                             int micro_batch, int concurrency,
                                                             int tp) const {
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

void require_calibration_options(const Config& config, const PlanOptions& options) {
  require(options.repeats >= 1, "plan.repeats must be at least 1");
  for (int copies : options.concurrency)
    require(copies >= 1, "plan.concurrency entries must be at least 1");
  for (int tp : options.tp_sizes) {
    const std::string bad_tp =
        tensor_parallel_problem(config.model, trained_granularities(config), tp);
    require(bad_tp.empty(), "plan.tp_sizes = " + std::to_string(tp) + ": " + bad_tp);
  }
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

using UnitChain = std::vector<std::unique_ptr<StageModel>>;

// One chain of single-unit models per tp size: rank 0 of a group of `tp`, whose all-reduces sum
// over itself only.
std::vector<UnitChain> build_chains(const Config& config, const std::vector<int>& tp_sizes,
                                    int units) {
  std::vector<UnitChain> chains;
  for (int tp : tp_sizes) {
    TensorParallel shard;
    if (tp > 1) {
      int initialized = 0;
      MPI_Initialized(&initialized);
      require(initialized, "calibrating tensor-parallel shards needs MPI initialised");
      shard.size = tp;
      shard.comm = make_mpi_communicator(MPI_COMM_SELF);
      shard.nested = trained_granularities(config);
    }
    chains.emplace_back();
    for (int u = 0; u < units; ++u) {
      chains.back().push_back(
          std::make_unique<StageModel>(config.model, config.train.seq_len, u, u + 1, shard));
      chains.back().back()->params().init_all(config.train.seed);
    }
  }
  return chains;
}

// Samples of one setting (concurrency level × tp × micro-batch), [unit][repeat].
struct Samples {
  std::vector<std::vector<double>> forward, backward, update, input, weight;
  explicit Samples(int units)
      : forward(units), backward(units), update(units), input(units), weight(units) {}
};

// One forward of every unit, the backward in reverse, then the update (zeroing, the norm and
// AdamW, as a step does them per rank: it also evicts the caches the next pass would otherwise
// find warm). `split`: each unit's backward runs as zbh1's B (its weight-gradient products
// recorded) and then W (the products run), timed into input and weight; the forward and the
// update are then run (so that both kinds of pass find the caches alike) but not kept.
void time_pass(UnitChain& units, Slot& slot, const TrainConfig& train, bool split, Samples* keep) {
  const int U = static_cast<int>(units.size());
  Tensor a, b;
  for (int u = 0; u < U; ++u) {
    const auto t0 = Clock::now();
    units[u]->forward(slot, a, b);
    if (keep && !split) keep->forward[u].push_back(seconds_since(t0));
    std::swap(a, b);
  }
  Tensor g, h;
  for (int u = U - 1; u >= 0; --u) {
    const auto t0 = Clock::now();
    if (!split) {
      units[u]->backward(slot, g, h);
      if (keep) keep->backward[u].push_back(seconds_since(t0));
    } else {
      DeferredWeightGradients products;
      {
        DeferWeightGradients defer(products);
        units[u]->backward(slot, g, h);
      }
      const auto t1 = Clock::now();
      products.run();
      if (keep) {
        keep->input[u].push_back(std::chrono::duration<double>(t1 - t0).count());
        keep->weight[u].push_back(seconds_since(t1));
      }
    }
    std::swap(g, h);
  }
  for (int u = 0; u < U; ++u) {
    ParamStore& store = units[u]->params();
    const auto t0 = Clock::now();
    store.zero_grads();
    const double norm = std::sqrt(grad_sum_squares(store));
    clip_gradients(store, norm, train.grad_clip);
    adamw_update(store, train, 1, train.lr);
    if (keep && !split) keep->update[u].push_back(seconds_since(t0));
  }
}

}  // namespace

Calibration calibrate(const Config& config, const std::vector<int>& micro_batches,
                      const PlanOptions& options, CalibrationCopies* copies) {
  require_calibration_options(config, options);
  for (int level : options.concurrency)
    require(level == 1 || copies != nullptr,
            "calibration: concurrency " + std::to_string(level) + " needs copies started");
  set_num_threads(config.run.threads);
  const std::vector<UnitPlan> plans = plan_units(config.model, config.train.seq_len);
  const int U = static_cast<int>(plans.size());
  std::vector<UnitChain> chains = build_chains(config, options.tp_sizes, U);

  const size_t T = options.tp_sizes.size(), M = micro_batches.size();
  std::vector<Samples> samples(options.concurrency.size() * T * M, Samples(U));
  const StepContext ctx = calibration_context(config);
  std::vector<std::vector<int32_t>> tokens;
  for (int mb : micro_batches) tokens.push_back(calibration_tokens(config, mb));
  const auto start = Clock::now();
  double reported = 0;
  for (int r = 0; r <= options.repeats; ++r) {  // r = 0 warms up (allocations, caches)
    for (size_t c = 0; c < options.concurrency.size(); ++c) {
      if (copies) copies->run(options.concurrency[c] - 1);
      for (size_t t = 0; t < T; ++t)
        for (size_t m = 0; m < M; ++m)
          for (bool split : {false, true}) {
            Slot slot;
            slot.ctx = &ctx;
            slot.tokens = tokens[m].data();
            slot.batch = micro_batches[m];
            time_pass(chains[t], slot, config.train, split,
                      r > 0 ? &samples[(c * T + t) * M + m] : nullptr);
          }
    }
    const double elapsed = seconds_since(start);
    if (elapsed - reported >= 5 &&
        r < options.repeats) {  // progress on stderr: stdout is the table
      reported = elapsed;
      std::fprintf(stderr, "calibration: repeat %d of %d, %.0f s, ETA %.0f s\n", r, options.repeats,
                   elapsed, elapsed / (r + 1) * (options.repeats - r));
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
                               pick(s.update[u]), pick(s.input[u]), pick(s.weight[u])});
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
         "+ norm + AdamW), zbh1's B (input gradient) and W (weight gradients)\n";
  char buf[64];
  for (const UnitTiming& t : c.units) {
    out << "unit " << t.name << " " << t.micro_batch << " " << t.concurrency << " " << t.tp;
    for (double v : {t.forward, t.backward, t.update, t.input, t.weight}) {
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
      bool good = !words.fail() && t.micro_batch >= 1 && t.concurrency >= 1 && t.tp >= 1;
      // B and W came later: a line without them (an older file) keeps input = weight = -1.
      std::vector<double> split;
      for (double seconds; words >> seconds;) split.push_back(seconds);
      good = good && words.eof() &&
             (split.empty() || (split.size() == 2 && split[0] >= 0 && split[1] >= 0));
      if (good && !split.empty()) {
        t.input = split[0];
        t.weight = split[1];
      }
      require(good, "calibration file " + path + " line " + std::to_string(number) +
                        ": expected `unit NAME MICRO_BATCH CONCURRENCY TP FORWARD BACKWARD UPDATE "
                        "[INPUT WEIGHT]`");
      c.units.push_back(t);
    } else {
      throw UsageError("calibration file " + path + " line " + std::to_string(number) +
                       ": unknown line '" + line + "'");
    }
  }
  require(!c.units.empty(), "calibration file " + path + " has no unit timings");
  return c;
}

}  // namespace hg
