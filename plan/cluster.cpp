#include "plan/cluster.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <type_traits>

#include "core/enum_names.h"
#include "core/error.h"
#include "trainer/ini.h"

namespace hg {

ScheduleKind schedule_kind(const std::string& name) {
  ScheduleKind kind{};
  require(parse_enum(name, kind),
          "plan.schedules: '" + name + "' is not a schedule: use " + enum_choices<ScheduleKind>());
  return kind;
}

namespace {

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

// One [cluster] or [plan] key: its name, how it is read, what it holds now (for --help's
// defaults) and what it means.
struct OptionSetter {
  const char* key;
  std::function<void(const std::string& key, const std::string& value)> set;
  std::function<std::string()> get;
  const char* meaning;
};

std::string number_text(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", v);
  return buffer;
}
template <class T>
std::string list_text(const std::vector<T>& values) {
  std::string text;
  for (const T& v : values) {
    if (!text.empty()) text += ',';
    if constexpr (std::is_same_v<T, std::string>)
      text += v;
    else
      text += std::to_string(v);
  }
  return text;
}

OptionSetter number(const char* key, double& field, const char* meaning) {
  return {key, [&field](const std::string& k, const std::string& v) { field = parse_number(k, v); },
          [&field] { return number_text(field); }, meaning};
}
OptionSetter integer(const char* key, int& field, const char* meaning) {
  return {key, [&field](const std::string& k, const std::string& v) { field = parse_int(k, v); },
          [&field] { return std::to_string(field); }, meaning};
}
OptionSetter word(const char* key, std::string& field, const char* meaning) {
  return {key, [&field](const std::string&, const std::string& v) { field = v; },
          [&field] { return field; }, meaning};
}
OptionSetter integers(const char* key, std::vector<int>& field, const char* meaning) {
  return {key,
          [&field](const std::string& k, const std::string& v) { field = parse_int_list(k, v); },
          [&field] { return list_text(field); }, meaning};
}

std::vector<OptionSetter> cluster_keys(ClusterSpec& c) {
  return {
      integer("nodes", c.nodes, "nodes in the cluster"),
      integer("devices_per_node", c.devices_per_node, "ranks per node (GPUs, or CPU processes)"),
      number("device_flops", c.device_flops, "peak FLOP/s of one device (the MFU denominator)"),
      number("device_memory", c.device_memory, "bytes per device"),
      number("intra_bandwidth", c.intra_bandwidth, "bytes/s per device between ranks of a node"),
      number("inter_bandwidth", c.inter_bandwidth, "bytes/s per device between nodes"),
      number("latency", c.latency, "seconds per message between nodes"),
      number("intra_latency", c.intra_latency, "seconds per message within a node (< 0: latency)"),
      number("allreduce_latency", c.allreduce_latency,
             "seconds per gradient all-reduce call (< 0: 2 ceil(log2 n) latency)"),
      number("allreduce_bandwidth", c.allreduce_bandwidth,
             "bytes/s of an all-reduce's ring term (< 0: the link's)"),
      number("message_overhead", c.message_overhead,
             "seconds a pipeline message costs beyond latency + bytes / bandwidth"),
      number("efficiency", c.efficiency, "achieved fraction of device_flops (cost model)"),
      number("unit_overhead", c.unit_overhead, "seconds per unit per forward or backward"),
      number("memory_reserve", c.memory_reserve, "bytes per device the model cannot use"),
      number("memory_bandwidth", c.memory_bandwidth,
             "bytes/s for the optimizer and bucket copies (0: not modelled)"),
      integer("host_collectives", c.host_collectives,
              "1: collectives progress on the ranks' own cores (CPU); 0: beside the compute")};
}

std::vector<OptionSetter> plan_keys(PlanOptions& o) {
  return {
      integer("ranks", o.ranks, "world size to plan for (0: every device)"),
      integer("dp", o.dp, "fix data parallelism (0: any)"),
      integer("pp", o.pp, "fix pipeline stages (0: any)"),
      integer("tp", o.tp, "fix tensor parallelism (0: any)"),
      integers("micro_batches", o.micro_batches, "candidate micro-batch sizes (empty: divisors)"),
      integer("max_micro_batch", o.max_micro_batch, "largest micro-batch tried (0: no limit)"),
      {"schedules",
       [&o](const std::string&, const std::string& v) { o.schedules = parse_word_list(v); },
       [&o] { return list_text(o.schedules); },
       "schedules to try: gpipe, 1f1b, interleaved, zbh1"},
      integers("virtual_stages", o.virtual_stages,
               "interleaved: chunks per rank to try (empty: the config's, else 2)"),
      word("precision", o.precision, "fp32 or bf16 (bytes of values and activations)"),
      {"bucket_mb",
       [&o](const std::string& k, const std::string& v) { o.bucket_mb = parse_number(k, v); },
       [&o] { return number_text(o.bucket_mb); },
       "data-parallel all-reduce bucket, MiB (0: parallel.grad_bucket_mb)"},
      word("calibration", o.calibration, "a file written by --calibrate (empty: the cost model)"),
      integer("top", o.top, "rows printed (0: every layout)"),
      word("format", o.format, "table or csv (csv: every layout, feasible or not)"),
      integer("repeats", o.repeats, "--calibrate: timed repeats of each unit"),
      word("statistic", o.statistic, "--calibrate: median or min of the repeats"),
      integers("concurrency", o.concurrency, "--calibrate: copies run at once"),
      integers("tp_sizes", o.tp_sizes, "--calibrate: also time tensor-parallel shards for these")};
}

// "unknown key cluster.nodez on the command line; the keys of [cluster] are nodes, ..."
UsageError unknown_key(const std::vector<OptionSetter>& keys, const std::string& section,
                       const std::string& key, const std::string& where) {
  std::string known;
  for (const OptionSetter& k : keys) known += std::string(known.empty() ? "" : ", ") + k.key;
  return UsageError("unknown key " + section + "." + key + where + "; the keys of [" + section +
                    "] are " + known);
}

void apply_option(std::vector<OptionSetter> keys, const std::string& section,
                  const std::string& key, const std::string& value, const std::string& where) {
  for (const OptionSetter& k : keys)
    if (key == k.key) return k.set(section + "." + key, value);
  throw unknown_key(keys, section, key, where);
}

// A cluster file: [cluster] and [plan] sections of key = value lines, read as run configurations
// are (trainer/ini.h).
void read_cluster_file(const std::string& path, ClusterSpec& cluster, PlanOptions& options) {
  std::ifstream in(path);
  require(in.good(), "cannot read cluster file '" + path + "' (--cluster)");
  const std::string where = " in " + path;
  auto section_keys = [&](const std::string& section) {
    return section == "cluster" ? cluster_keys(cluster) : plan_keys(options);
  };
  std::vector<std::string> names;  // "section.key"
  for (const std::string section : {"cluster", "plan"})
    for (const OptionSetter& k : section_keys(section)) names.push_back(section + "." + k.key);
  auto unknown = [&](const std::string& name) {
    const size_t dot = name.find('.');
    if (dot == std::string::npos)
      return UsageError("key " + name + where +
                        " is outside a section: put it under [cluster] or [plan]");
    const std::string section = name.substr(0, dot);
    if (section != "cluster" && section != "plan")
      return UsageError("section [" + section + "]" + where +
                        ": a cluster file has [cluster] and [plan]");
    return unknown_key(section_keys(section), section, name.substr(dot + 1), where);
  };
  const std::map<std::string, std::string> values = read_ini(
      in, names, unknown, "cluster file " + path,
      "; a cluster file holds key = value lines under [cluster] and [plan], each key once");
  for (const auto& [name, value] : values) {
    const std::string section = name.substr(0, name.find('.'));
    apply_option(section_keys(section), section, name.substr(section.size() + 1), value, where);
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

}  // namespace

std::string describe_plan_keys() {
  ClusterSpec cluster;
  PlanOptions options;
  std::string text;
  for (const std::string section : {"cluster", "plan"}) {
    text += "\n[" + section + "]  (a --cluster FILE's sections, or --" + section + ".key value)\n";
    for (const OptionSetter& k : section == "cluster" ? cluster_keys(cluster) : plan_keys(options)) {
      const std::string value = k.get();
      text += "  --" + section + "." + k.key + "  " + k.meaning + "\n      default " +
              (value.empty() ? "(empty)" : value) + "\n";
    }
  }
  return text;
}

PlanCommand parse_plan_command(const std::vector<std::string>& args) {
  PlanCommand command;
  std::vector<std::pair<std::string, std::string>> flags;  // (--cluster.x | --plan.x, value)
  std::string cluster_file;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--calibrate") {
      command.calibrate = true;
      continue;
    }
    if (!a.starts_with("--cluster") && !a.starts_with("--plan.")) {
      command.config_args.push_back(a);
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
  if (!cluster_file.empty()) read_cluster_file(cluster_file, command.cluster, command.options);
  for (const auto& [key, value] : flags) {
    if (key.starts_with("--cluster."))
      apply_option(cluster_keys(command.cluster), "cluster", key.substr(10), value,
                   " on the command line");
    else if (key.starts_with("--plan."))
      apply_option(plan_keys(command.options), "plan", key.substr(7), value,
                   " on the command line");
    else
      throw UsageError("unknown option " + key +
                       ": use --cluster FILE, --cluster.key value or "
                       "--plan.key value");
  }
  validate(command.cluster, command.options);
  return command;
}

}  // namespace hg
