// Configuration (ARCHITECTURE.md §8). One table binds every "section.key" to its member; the
// command line, INI files, checkpoint configs and to_ini() all walk that table, so a key added to
// config.h needs one line here. Defaults are the member initialisers of config.h.
#include "trainer/config.h"

#include <boost/program_options.hpp>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <type_traits>

#include "checkpoint/checkpoint_io.h"
#include "core/enum_names.h"
#include "core/error.h"
#include "model/tensor_parallel.h"
#include "trainer/ini.h"
#include "trainer/user_paths.h"

namespace hg {
namespace {

namespace po = boost::program_options;

// ---- Text <-> value. parse_text returns false when `text` is not a valid spelling. ----

bool parse_text(const std::string& text, bool& out) {
  if (text != "true" && text != "false") return false;
  out = text == "true";
  return true;
}

// Integers and floating point: the whole text must be one number, no spaces, no "+", finite.
template <class T>
requires std::is_arithmetic_v<T>
bool parse_text(const std::string& text, T& out) {
  T value{};
  const char* end = text.data() + text.size();
  auto [stop, status] = std::from_chars(text.data(), end, value);
  if (text.empty() || status != std::errc() || stop != end) return false;
  if constexpr (std::is_floating_point_v<T>) {
    if (!std::isfinite(value)) return false;
  }
  out = value;
  return true;
}

// '#' starts a comment in INI files and a line break ends the value: neither would survive
// to_ini() -> config_from_ini(), so they are refused up front.
bool parse_text(const std::string& text, std::string& out) {
  if (text.find_first_of("#\r\n") != std::string::npos) return false;
  out = text;
  return true;
}

bool parse_text(const std::string& text, std::vector<int>& out) {
  std::vector<int> values;
  if (!text.empty()) {
    std::string item;
    std::istringstream in(text + ",");  // a trailing comma in `text` leaves an empty item
    while (std::getline(in, item, ','))
      if (!parse_text(item, values.emplace_back())) return false;
  }
  out = std::move(values);
  return true;
}

// Choice keys: one of the enum's spellings (core/enum_names.h).
template <class E>
requires std::is_enum_v<E>
bool parse_text(const std::string& text, E& out) { return parse_enum(text, out); }

template <class T>
std::string expected_spelling() {
  if constexpr (std::is_enum_v<T>)
    return "one of " + enum_choices<T>();
  else if constexpr (std::is_same_v<T, bool>)
    return "true or false";
  else if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>)
    return "a non-negative integer";
  else if constexpr (std::is_integral_v<T>)
    return "an integer";
  else if constexpr (std::is_floating_point_v<T>)
    return "a finite number (e.g. 0.0003 or 3e-4)";
  else if constexpr (std::is_same_v<T, std::string>)
    return "text without '#' or line breaks";
  else
    return "integers separated by commas without spaces (e.g. 1,2,4)";
}

// The shortest "%.Ng" text that reads back as exactly `value` (integral values without exponent),
// so 3e-4 prints as 0.0003 and 0.1f as 0.1.
template <class T>
std::string shortest_text(T value) {
  char buffer[40];
  if (value == std::trunc(value) && std::fabs(value) < 1e15) {
    std::snprintf(buffer, sizeof buffer, "%.0f", static_cast<double>(value));
    return buffer;
  }
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buffer, sizeof buffer, "%.*g", digits, static_cast<double>(value));
    T back{};
    if (parse_text(buffer, back) && back == value) break;
  }
  return buffer;
}

std::string format_value(bool value) { return value ? "true" : "false"; }
std::string format_value(const std::string& value) { return value; }
std::string format_value(const char* value) { return value; }
template <class E>
requires std::is_enum_v<E> std::string format_value(E value) { return enum_name(value); }
template <class T>
requires std::is_arithmetic_v<T> std::string format_value(T value) {
  if constexpr (std::is_floating_point_v<T>) return shortest_text(value);
  return std::to_string(value);
}
std::string format_value(const std::vector<int>& values) {
  std::string text;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) text += ',';
    text += std::to_string(values[i]);
  }
  return text;
}

// ---- The key table ----

struct KeySpec {
  std::string section;
  std::string name;
  std::string choices;   // "a|b" for enumerations, empty otherwise
  bool omit_when_empty;  // optional lists: absent from to_ini() when unset (as in the fixtures)
  std::string expected;  // what a valid spelling looks like
  const char* meaning;   // one line for --help
  std::function<bool(Config&, const std::string&)> read;
  std::function<std::string(const Config&)> write;

  std::string full_name() const { return section + "." + name; }
};

template <class Part, class T>
KeySpec bind_key(const char* section, const char* name, Part Config::*part, T Part::*member,
                 const char* meaning) {
  std::string choices;
  if constexpr (std::is_enum_v<T>) choices = enum_choices<T>("|");
  return {section,
          name,
          choices,
          std::is_same_v<T, std::vector<int>>,
          expected_spelling<T>(),
          meaning,
          [=](Config& c, const std::string& text) { return parse_text(text, (c.*part).*member); },
          [=](const Config& c) { return format_value((c.*part).*member); }};
}

// Key name = member name, so the macro cannot bind a key to the wrong member.
#define HG_KEY(section, key, meaning) \
  bind_key(#section, #key, &Config::section, &decltype(Config::section)::key, meaning)

// Every key in to_ini() order: sections as in ARCHITECTURE.md §8, keys as in its table.
const std::vector<KeySpec>& key_table() {
  static const std::vector<KeySpec> table = {
      HG_KEY(model, vocab_size,
             "token alphabet size V (256 for bytes; the data's vocabulary must fit)"),
      HG_KEY(model, d_model, "model width d"),
      HG_KEY(model, heads, "attention heads H (d_model / heads = head width e)"),
      HG_KEY(model, ffn, "FFN hidden width F of every block"),
      HG_KEY(model, ffn_widths,
             "per stack block FFN widths of an extracted MatFormer model (empty: all ffn)"),
      HG_KEY(model, hierarchy, "stacks as n@K (blocks @ total shortening), e.g. 2@1 4@3 2@1"),
      HG_KEY(model, attention,
             "stack attention: long_short (window + compressed chunks) or full causal"),
      HG_KEY(model, window,
             "long_short: sliding window w (keys per query at the block's resolution)"),
      HG_KEY(model, chunk, "long_short: chunk length l of the compressed keys"),
      HG_KEY(model, rank, "long_short: compressed keys r per chunk"),
      HG_KEY(model, positions, "rope (rotary positions) or none"),
      HG_KEY(model, downsample, "shortening: linear pooling or avg"),
      HG_KEY(model, upsample, "upsampling: linear or repeat"),
      HG_KEY(model, resampling, "plain, or attention resampling blocks around each shortening"),
      HG_KEY(model, activation, "FFN activation: relu2 (squared ReLU) or gelu"),
      HG_KEY(model, dconv, "causal depthwise convolutions after Q, K, V"),
      HG_KEY(model, ffn_granularities, "MatFormer granularities g: nested FFN widths F/g"),
      HG_KEY(model, dropout, "dropout probability on embeddings and every residual branch"),
      HG_KEY(model, head_granularities,
             "MatFormer head granularities g: nested head counts H/g of stack attention"),
      HG_KEY(model, head_widths,
             "per stack block head counts of an extracted MatFormer model (empty: all heads)"),
      HG_KEY(train, seq_len, "tokens per sequence L"),
      HG_KEY(train, batch, "sequences per update (global, over data-parallel replicas)"),
      HG_KEY(train, micro_batch, "sequences per micro-batch per replica"),
      HG_KEY(train, steps, "updates to train (0 writes the initial checkpoint)"),
      HG_KEY(train, lr, "peak learning rate"),
      HG_KEY(train, warmup, "linear warm-up steps"),
      HG_KEY(train, min_lr_ratio, "cosine decay floor, as a fraction of lr"),
      HG_KEY(train, weight_decay, "AdamW decoupled weight decay (matrices only)"),
      HG_KEY(train, beta1, "AdamW beta1"),
      HG_KEY(train, beta2, "AdamW beta2"),
      HG_KEY(train, eps, "AdamW epsilon"),
      HG_KEY(train, grad_clip, "global gradient-norm clip (0: none)"),
      HG_KEY(train, seed, "seed of init, dropout and the sampled windows"),
      HG_KEY(train, matformer,
             "MatFormer training: off, joint (every granularity) or sample (one per step)"),
      HG_KEY(train, recompute, "activation recomputation: none or blocks"),
      HG_KEY(train, precision,
             "matrix-product operands: fp32, or bf16 (fp32 accumulation and weights)"),
      HG_KEY(data, dir, "prepared shards (hourglass prep)"),
      HG_KEY(parallel, dp, "data-parallel replicas"),
      HG_KEY(parallel, pp, "pipeline stages"),
      HG_KEY(parallel, tp,
             "tensor-parallel ranks per stage (divides heads, ffn and every MatFormer band)"),
      HG_KEY(parallel, schedule,
             "pipeline schedule: gpipe, 1f1b, interleaved or zbh1 (zero-bubble H1)"),
      HG_KEY(parallel, virtual_stages, "interleaved: model chunks per rank"),
      HG_KEY(parallel, stages,
             "units per (virtual) stage, e.g. 5,4,6 (empty: balanced by the cost model)"),
      HG_KEY(parallel, timeout,
             "seconds any blocking wait may take before the job aborts, naming it"),
      HG_KEY(parallel, grad_bucket_mb, "data-parallel gradient all-reduce bucket size (MiB)"),
      HG_KEY(parallel, zero,
             "1: ZeRO-1, each data-parallel replica holds and updates 1/dp of the AdamW moments "
             "(0: every replica holds all)"),
      HG_KEY(parallel, communicator,
             "run.device cuda: auto (NCCL when no two ranks share a GPU), nccl or mpi "
             "(host-staged) for the tp, pp and dp traffic"),
      HG_KEY(checkpoint, dir, "checkpoint directory (empty: <run.dir>/checkpoints)"),
      HG_KEY(checkpoint, every, "save every N steps (0: only at the end)"),
      HG_KEY(checkpoint, keep, "newest checkpoints kept (0: all)"),
      HG_KEY(checkpoint, resume,
             "none, auto (the newest complete one in checkpoint.dir) or a FILE"),
      HG_KEY(checkpoint, init_from, "FILE: weights only, fresh optimizer, step 0"),
      HG_KEY(log, every, "progress line every N steps"),
      HG_KEY(log, metrics, "JSON-lines metrics file (empty: <run.dir>/metrics.jsonl)"),
      HG_KEY(log, trace, "Chrome/Perfetto trace FILE of every rank (empty: none)"),
      HG_KEY(log, tensorboard,
             "DIR of TensorBoard event files written as training goes (empty: none)"),
      HG_KEY(run, dir, "run directory (log, metrics, checkpoints)"),
      HG_KEY(run, threads, "threads per rank (0: OpenMP's default)"),
      HG_KEY(run, device, "cpu or cuda"),
      HG_KEY(run, attention_backend,
             "run.device cuda: native (hand kernels), cudnn (cuDNN's fused SDPA for the window "
             "and full attentions, bf16 in and out; needs train.precision bf16) or split (cudnn's "
             "composition with the hand kernels, to check it)"),
      HG_KEY(run, time_limit, "seconds; then checkpoint and exit 75 (0: none)"),
      HG_KEY(run, memory_limit_gb, "GiB per node train may fill (0: detect, below 0: no check)"),
      HG_KEY(eval, every, "score the eval split every N steps during training (0: never)"),
      HG_KEY(eval, windows, "evaluation windows scored each time (the split's first M)"),
      HG_KEY(eval, split, "split scored during training: valid, test or train"),
  };
  return table;
}

#undef HG_KEY

// "unknown key 'model.foo' in FILE; valid keys of [model]: vocab_size, d_model, ..."
UsageError unknown_key(std::string name, const std::string& where) {
  name = name.substr(0, name.find('='));
  name.erase(0, name.find_first_not_of('-'));
  const std::string section = name.substr(0, name.find('.'));
  std::string valid, sections;
  for (const auto& key : key_table()) {
    if (key.section == section) valid += (valid.empty() ? "" : ", ") + key.name;
    if (sections.find("[" + key.section + "]") == std::string::npos)
      sections += (sections.empty() ? "[" : ", [") + key.section + "]";
  }
  if (name.find('.') == std::string::npos || valid.empty())
    return UsageError("unknown configuration key '" + name + "' " + where +
                      "; keys are section.key with sections " + sections);
  return UsageError("unknown configuration key '" + name + "' " + where + "; valid keys of [" +
                    section + "]: " + valid);
}

// The command line's keys: every key of the table, and --config.
po::options_description describe_keys() {
  po::options_description description;
  for (const auto& key : key_table())
    description.add_options()(key.full_name().c_str(), po::value<std::string>());
  description.add_options()("config", po::value<std::string>());
  return description;
}

// Keys already in `values` win (trainer/ini.h), so flags stored first override files.
void store_config_ini(std::istream& in, const std::string& where, po::variables_map& values) {
  std::vector<std::string> names;
  for (const auto& key : key_table()) names.push_back(key.full_name());
  auto unknown = [&where](const std::string& name) { return unknown_key(name, where); };
  store_ini(in, names, values, unknown, "configuration " + where);
}

Config config_from_values(const po::variables_map& values) {
  Config config;
  for (const auto& key : key_table()) {
    if (!values.count(key.full_name())) continue;
    const std::string text = values[key.full_name()].as<std::string>();
    require(key.read(config, text),
            key.full_name() + " = '" + text + "' is not valid: expected " + key.expected);
  }
  config.model.stacks = parse_hierarchy(config.model.hierarchy);
  return config;
}

// checkpoint.init_from an extracted MatFormer model (§1.5, §9.6): the run takes its FFN widths
// and head counts from the checkpoint's configuration when it sets neither list itself (also when
// it resumes: its checkpoints then have those widths too).
void adopt_extracted_widths(Config& config) {
  const std::string& file = config.checkpoint.init_from;
  if (file.empty() || !config.model.ffn_widths.empty() || !config.model.head_widths.empty()) return;
  if (!user_path_is_file(file)) return;  // validate_run names the missing file
  Config stored;
  try {
    stored = config_from_ini(read_checkpoint_header(file).config);
  } catch (const UsageError&) {
    return;  // loading the weights names what is wrong with the file
  }
  config.model.ffn_widths = stored.model.ffn_widths;
  config.model.head_widths = stored.model.head_widths;
}

// ---- Validation: each failure names the key, its value and the fix. ----

template <class T>
void check(bool ok, const std::string& key, const T& value, const std::string& rule) {
  if (!ok) throw UsageError(key + " = " + format_value(value) + ": " + rule);
}

void validate_parallel(const Config& c) {
  const ParallelConfig& p = c.parallel;
  check(p.dp >= 1, "parallel.dp", p.dp, "must be at least 1");
  check(p.pp >= 1, "parallel.pp", p.pp, "must be at least 1");
  // Heads, FFN hidden units and every MatFormer band are split evenly across tp (§6).
  const std::string bad_tp = tensor_parallel_problem(c.model, trained_granularities(c), p.tp);
  check(bad_tp.empty(), "parallel.tp", p.tp, bad_tp);
  check(p.virtual_stages >= 1 && p.virtual_stages <= kMaxVirtualStages, "parallel.virtual_stages",
        p.virtual_stages, "must be in [1, " + std::to_string(kMaxVirtualStages) + "]");
  check(p.virtual_stages == 1 || p.schedule == ScheduleKind::Interleaved, "parallel.virtual_stages",
        p.virtual_stages,
        "needs parallel.schedule = interleaved (it is " + format_value(p.schedule) +
            "); set the schedule or virtual_stages = 1");
  check(p.virtual_stages == 1 || p.pp >= 2, "parallel.virtual_stages", p.virtual_stages,
        "needs parallel.pp >= 2 (the chunks of a virtual pipeline live on different ranks)");
  if (p.schedule == ScheduleKind::Interleaved && p.dp >= 1 && c.train.micro_batch >= 1) {
    // Megatron-LM's interleaved order walks the chunks in groups of pp micro-batches.
    const int64_t micro_batches = c.train.batch / (int64_t{p.dp} * c.train.micro_batch);
    check(micro_batches % p.pp == 0, "train.batch", c.train.batch,
          "gives " + std::to_string(micro_batches) +
              " micro-batches per replica (batch / (dp x micro_batch)); the interleaved schedule "
              "needs a multiple of parallel.pp = " +
              std::to_string(p.pp) + ": change batch, micro_batch or pp");
  }
  const int virtual_count = p.pp * p.virtual_stages;
  std::vector<int> stages;
  check(parse_text(p.stages, stages), "parallel.stages", "'" + p.stages + "'",
        "expected unit counts per stage separated by commas without spaces, e.g. 5,4,6");
  check(stages.empty() || static_cast<int>(stages.size()) == virtual_count, "parallel.stages",
        "'" + p.stages + "'",
        "needs one unit count per pipeline stage (parallel.pp = " + std::to_string(p.pp) +
            (p.virtual_stages > 1
                 ? " x parallel.virtual_stages = " + std::to_string(p.virtual_stages) + ": " +
                       std::to_string(virtual_count) + " virtual stages"
                 : std::string()) +
            "), or empty for automatic placement");
  for (int units : stages)
    check(units >= 1, "parallel.stages", "'" + p.stages + "'", "every stage needs at least 1 unit");
  check(p.timeout > 0, "parallel.timeout", p.timeout, "must be positive (seconds)");
  check(p.grad_bucket_mb > 0, "parallel.grad_bucket_mb", p.grad_bucket_mb,
        "must be positive (MiB per data-parallel all-reduce bucket)");
  check(p.zero == 0 || p.zero == 1, "parallel.zero", p.zero,
        "must be 0 (every replica holds the whole optimizer state) or 1 (ZeRO-1: sharded over dp)");
  check(p.communicator != CommunicatorChoice::Nccl || c.run.device == Device::Cuda,
        "parallel.communicator", p.communicator,
        "NCCL carries GPU memory and needs run.device = cuda; use auto or mpi on the CPU");
}

void validate_train(const Config& c) {
  const TrainConfig& t = c.train;
  check(t.seq_len >= 1, "train.seq_len", t.seq_len, "must be at least 1");
  check(t.batch >= 1, "train.batch", t.batch, "must be at least 1");
  check(t.micro_batch >= 1, "train.micro_batch", t.micro_batch, "must be at least 1");
  const int64_t per_pass = int64_t{c.parallel.dp} * t.micro_batch;
  check(c.parallel.dp < 1 || t.batch % per_pass == 0, "train.batch", t.batch,
        "must be a multiple of parallel.dp x train.micro_batch = " + std::to_string(per_pass) +
            " (B = dp * micro_batch * micro_batches); change batch, micro_batch or dp");
  check(t.steps >= 0, "train.steps", t.steps,
        "must be at least 0 (0 writes the initial checkpoint)");
  check(t.lr > 0, "train.lr", t.lr, "must be positive");
  check(t.warmup >= 0, "train.warmup", t.warmup, "must be at least 0");
  check(t.min_lr_ratio >= 0 && t.min_lr_ratio <= 1, "train.min_lr_ratio", t.min_lr_ratio,
        "must be in [0, 1]");
  check(t.weight_decay >= 0, "train.weight_decay", t.weight_decay, "must be at least 0");
  check(t.beta1 >= 0 && t.beta1 < 1, "train.beta1", t.beta1, "must be in [0, 1)");
  check(t.beta2 >= 0 && t.beta2 < 1, "train.beta2", t.beta2, "must be in [0, 1)");
  check(t.eps > 0, "train.eps", t.eps, "must be positive");
  check(t.grad_clip >= 0, "train.grad_clip", t.grad_clip,
        "must be at least 0 (0 disables clipping)");
  check(t.matformer == Matformer::Off || c.model.ffn_widths.empty(), "train.matformer", t.matformer,
        "must be off when model.ffn_widths is set (an extracted model has fixed FFN widths)");
  check(t.matformer == Matformer::Off || c.model.head_widths.empty(), "train.matformer",
        t.matformer,
        "must be off when model.head_widths is set (an extracted model has fixed head counts)");
}

void validate_run(const Config& c) {
  const CheckpointConfig& ck = c.checkpoint;
  check(ck.every >= 0, "checkpoint.every", ck.every, "must be at least 0 (0 = only at the end)");
  check(ck.keep >= 0, "checkpoint.keep", ck.keep, "must be at least 0 (0 = keep every checkpoint)");
  const bool resume_file = ck.resume != "none" && ck.resume != "auto";
  check(!ck.resume.empty(), "checkpoint.resume", "''", "use none, auto or a checkpoint file");
  check(!resume_file || user_path_is_file(ck.resume), "checkpoint.resume", ck.resume,
        "no such file; use none, auto (latest in checkpoint.dir) or an existing file");
  check(ck.init_from.empty() || user_path_is_file(ck.init_from), "checkpoint.init_from",
        ck.init_from, "no such file; give an existing checkpoint");
  check(!resume_file || ck.init_from.empty(), "checkpoint.init_from", ck.init_from,
        "cannot be combined with checkpoint.resume = " + ck.resume + "; set only one");
  check(c.log.every >= 1, "log.every", c.log.every, "must be at least 1");
  check(c.run.threads >= 0, "run.threads", c.run.threads,
        "must be at least 0 (0 = OpenMP default)");
  check(c.run.time_limit >= 0, "run.time_limit", c.run.time_limit,
        "must be at least 0 (seconds, 0 = none)");
  check(c.run.attention_backend == AttentionBackend::Native || c.run.device == Device::Cuda,
        "run.attention_backend", c.run.attention_backend,
        "chooses the GPU's attention: needs run.device = cuda; use native on the CPU");
  check(c.run.attention_backend != AttentionBackend::Cudnn ||
            c.train.precision == MatmulPrecision::Bf16,
        "run.attention_backend", c.run.attention_backend,
        "cuDNN's attention takes and returns bfloat16, so it needs train.precision = bf16 (an "
        "fp32 run stays float32 in every product); set bf16 or use native");
  check(c.eval.every >= 0, "eval.every", c.eval.every, "must be at least 0 (steps, 0 = never)");
  check(c.eval.windows >= 1, "eval.windows", c.eval.windows, "must be at least 1");
  check(c.eval.split == "valid" || c.eval.split == "test" || c.eval.split == "train", "eval.split",
        c.eval.split, "must be valid, test or train");
}

// §9.6: head granularities divide H and pair with the FFN ones; extracted head counts per block.
void validate_head_nesting(const ModelConfig& m, int blocks) {
  const std::vector<int>& g = m.head_granularities;
  check(!g.empty(), "model.head_granularities", g,
        "must list at least one divisor of model.heads, e.g. 1");
  for (int h : g)
    check(
        h >= 1 && m.heads % h == 0, "model.head_granularities", g,
        "entry " + std::to_string(h) + " does not divide model.heads = " + std::to_string(m.heads));
  check(std::set<int>(g.begin(), g.end()).size() == g.size(), "model.head_granularities", g,
        "entries must be distinct");
  check(g.size() == 1 || m.ffn_granularities.size() == 1 || g.size() == m.ffn_granularities.size(),
        "model.head_granularities", g,
        "pairs entry by entry with model.ffn_granularities = " + format_value(m.ffn_granularities) +
            " (sub-model i takes both i-th entries): give both lists the same length, or one "
            "of them a single entry");
  check(m.head_widths.empty() || static_cast<int>(m.head_widths.size()) == blocks,
        "model.head_widths", m.head_widths,
        "needs one head count per stack block in forward order (" + std::to_string(blocks) +
            " blocks in model.hierarchy), or empty for model.heads everywhere");
  for (int h : m.head_widths)
    check(h >= 1 && h <= m.heads, "model.head_widths", m.head_widths,
          "entry " + std::to_string(h) +
              " is outside [1, model.heads = " + std::to_string(m.heads) + "]");
}

void validate_config(const Config& config) {
  validate_model(config.model, config.train.seq_len);
  validate_train(config);
  validate_parallel(config);
  validate_run(config);
}

}  // namespace

// --help (issue 18): every key from the table the parser uses, so the text cannot drift.
std::string describe_configuration() {
  const Config defaults;
  std::string text, section;
  for (const auto& key : key_table()) {
    if (key.section != section) {
      section = key.section;
      text += "\n[" + section + "]\n";
    }
    const std::string value = key.write(defaults);
    text += "  --" + key.full_name() + "  " + key.meaning + "\n      " + key.expected +
            "; default " + (value.empty() ? "(empty)" : value) + "\n";
  }
  return text;
}

// seq_len <= 0 skips the checks that need a sequence length (a checkpoint's model alone).
void validate_model(const ModelConfig& m, int seq_len) {
  const std::vector<StackSpec> stacks = parse_hierarchy(m.hierarchy);
  check(m.vocab_size >= 2 && m.vocab_size <= 65536, "model.vocab_size", m.vocab_size,
        "must be in [2, 65536] (tokens are stored as uint8 or uint16)");
  check(m.d_model >= 1, "model.d_model", m.d_model, "must be at least 1");
  check(m.heads >= 1 && m.d_model % m.heads == 0, "model.heads", m.heads,
        "must divide model.d_model = " + std::to_string(m.d_model) + "; choose a divisor");
  check(m.positions != Positions::Rope || m.head_dim() % 2 == 0, "model.heads", m.heads,
        "rope needs an even head width but model.d_model / model.heads = " +
            std::to_string(m.head_dim()) + "; change heads or d_model, or model.positions = none");
  check(m.ffn >= 1, "model.ffn", m.ffn, "must be at least 1");
  check(!m.ffn_granularities.empty(), "model.ffn_granularities", m.ffn_granularities,
        "must list at least one divisor of model.ffn, e.g. 1");
  for (int g : m.ffn_granularities)
    check(g >= 1 && m.ffn % g == 0, "model.ffn_granularities", m.ffn_granularities,
          "entry " + std::to_string(g) + " does not divide model.ffn = " + std::to_string(m.ffn));
  check(std::set<int>(m.ffn_granularities.begin(), m.ffn_granularities.end()).size() ==
            m.ffn_granularities.size(),
        "model.ffn_granularities", m.ffn_granularities, "entries must be distinct");
  int blocks = 0;
  for (const StackSpec& stack : stacks) blocks += stack.blocks;
  check(m.ffn_widths.empty() || static_cast<int>(m.ffn_widths.size()) == blocks, "model.ffn_widths",
        m.ffn_widths,
        "needs one width per stack block in forward order (" + std::to_string(blocks) +
            " blocks in model.hierarchy), or empty for model.ffn everywhere");
  for (int w : m.ffn_widths)
    check(w >= 1 && w <= m.ffn, "model.ffn_widths", m.ffn_widths,
          "entry " + std::to_string(w) + " is outside [1, model.ffn = " + std::to_string(m.ffn) +
              "]");
  validate_head_nesting(m, blocks);
  check(m.dropout >= 0 && m.dropout < 1, "model.dropout", m.dropout, "must be in [0, 1)");
  check(m.window >= 1, "model.window", m.window, "must be at least 1");
  check(m.chunk >= 1, "model.chunk", m.chunk, "must be at least 1");
  check(m.rank >= 1, "model.rank", m.rank, "must be at least 1");
  const bool long_short = m.attention == AttentionKind::LongShort;
  check(!long_short || m.window >= m.chunk, "model.window", m.window,
        "long-short attention needs window >= model.chunk = " + std::to_string(m.chunk));
  if (seq_len <= 0) return;
  const int middle_k = stacks[stacks.size() / 2].shortening;
  check(seq_len % middle_k == 0, "train.seq_len", seq_len,
        "must be divisible by the middle stack's shortening " + std::to_string(middle_k) +
            " (model.hierarchy)");
  for (size_t i = 0; long_short && i < stacks.size(); ++i) {
    const int rows = seq_len / stacks[i].shortening;
    check(stacks[i].blocks == 0 || rows % m.chunk == 0, "train.seq_len", seq_len,
          "stack " + std::to_string(i) + " runs on seq_len / " +
              std::to_string(stacks[i].shortening) + " = " + std::to_string(rows) +
              " rows, which model.chunk = " + std::to_string(m.chunk) +
              " does not divide; make seq_len a multiple of " +
              std::to_string(stacks[i].shortening * m.chunk));
  }
}

std::string Config::to_ini() const {
  std::string text, section;
  for (const auto& key : key_table()) {
    if (key.section != section) {
      text += (section.empty() ? "[" : "\n[") + key.section + "]\n";
      section = key.section;
    }
    const std::string value = key.write(*this);
    if (value.empty() && key.omit_when_empty) continue;
    text += key.name + (value.empty() ? " =\n" : " = " + value + "\n");
  }
  return text;
}

Config parse_config(const std::vector<std::string>& args) {
  // "--key value" -> "--key=value", so that values such as -1 are not taken for options
  // (boost refuses an empty value after '=', so "--key ''" stays two tokens).
  std::vector<std::string> tokens;
  for (size_t i = 0; i < args.size(); ++i) {
    const bool join = args[i].starts_with("--") && args[i].find('=') == std::string::npos &&
                      i + 1 < args.size() && !args[i + 1].empty() && !args[i + 1].starts_with("--");
    tokens.push_back(join ? args[i] + "=" + args[i + 1] : args[i]);
    i += join;
  }
  po::variables_map values;
  try {
    const int style = po::command_line_style::default_style &
                      ~po::command_line_style::allow_guessing;    // no abbreviated keys
    const po::options_description description = describe_keys();  // `parsed` points to it
    po::parsed_options parsed =
        po::command_line_parser(tokens).options(description).style(style).run();
    for (const auto& option : parsed.options)
      require(!option.string_key.empty(),
              "unexpected argument '" + option.original_tokens.front() +
                  "' on the command line; settings are --section.key value or --config FILE");
    po::store(parsed, values);
  } catch (const po::unknown_option& e) {
    throw unknown_key(e.get_option_name(), "on the command line");
  } catch (const po::error& e) {
    throw UsageError(std::string("command line: ") + e.what() +
                     " (use --config FILE and --section.key value)");
  }
  if (values.count("config")) {
    const std::string file = values["config"].as<std::string>();
    // An ifstream opens a directory without complaint and then reads nothing: refuse it here.
    require(!user_path_is_directory(file),
            "--config " + file + " is a directory; give an INI file (e.g. configs/quickstart.ini)");
    std::ifstream in(file);
    require(in.good(), "--config " + file + ": cannot read it (" + std::strerror(errno) +
                           "); give a readable INI file");
    store_config_ini(in, "in " + file, values);
  }
  Config config = config_from_values(values);
  adopt_extracted_widths(config);
  validate_config(config);
  return config;
}

Config config_from_ini(const std::string& ini_text) {
  po::variables_map values;
  std::istringstream in(ini_text);
  store_config_ini(in, "in the checkpoint configuration", values);
  Config config = config_from_values(values);
  validate_model(config.model, values.count("train.seq_len") ? config.train.seq_len : 0);
  return config;
}

}  // namespace hg
