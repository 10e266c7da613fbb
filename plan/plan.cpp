#include "plan/plan.h"

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "model/tensor_parallel.h"
#include "plan/report.h"

namespace hg {
namespace {

std::vector<int> divisors(int n) {
  std::vector<int> out;
  for (int d = 1; d <= n; ++d)
    if (n % d == 0) out.push_back(d);
  return out;
}

// Why tp cannot run this model on this cluster, or "".
std::string tp_skip_reason(const Config& config, int tp, int devices_per_node) {
  const std::string bad_tp =
      tensor_parallel_problem(config.model, trained_granularities(config), tp);
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

int plan_main(const std::vector<std::string>& args) {
  const PlanCommand command = parse_plan_command(args);
  const ClusterSpec& cluster = command.cluster;
  const PlanOptions& options = command.options;
  const Config config = parse_config(command.config_args);

  if (command.calibrate) {
    const std::string path =
        options.calibration.empty()
            ? (std::filesystem::path(config.run.dir) / "calibration.txt").string()
            : options.calibration;
    const std::vector<int> sizes = options.micro_batches.empty()
                                       ? std::vector<int>{config.train.micro_batch}
                                       : options.micro_batches;
    require_calibration_options(config, options);  // before the copies start
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
    print_calibration(c, options.repeats, path);
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
