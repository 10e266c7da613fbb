#include "plan/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/enum_names.h"
#include "plan/plan.h"

namespace hg {

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

namespace {

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

}  // namespace

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
      "(zbh1: the final W; in %s buckets, started during it) + optimizer\n",
      si(options.bucket_mb > 0 ? options.bucket_mb * 1024 * 1024
                               : double(grad_bucket_bytes(config.parallel)),
         "B")
          .c_str());
  for (const std::string& s : r.skipped) std::printf("not evaluated: %s\n", s.c_str());
}

void print_calibration(const Calibration& c, int repeats, const std::string& path) {
  std::printf("calibration: %zu unit timings (%d thread(s), %s of %d) -> %s\n", c.units.size(),
              c.threads, c.statistic.c_str(), repeats, path.c_str());
  std::printf("%-24s %5s %7s %4s %12s %12s %12s %12s %12s\n", "unit", "mb", "copies", "tp",
              "forward", "backward", "update", "zbh1 B", "zbh1 W");
  for (const UnitTiming& t : c.units)
    std::printf("%-24s %5d %7d %4d %12s %12s %12s %12s %12s\n", t.name.c_str(), t.micro_batch,
                t.concurrency, t.tp, seconds_text(t.forward).c_str(),
                seconds_text(t.backward).c_str(), seconds_text(t.update).c_str(),
                seconds_text(t.input).c_str(), seconds_text(t.weight).c_str());
}

}  // namespace hg
