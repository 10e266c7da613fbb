// The metrics file (log.metrics): one JSON object per update, appended and flushed at once so a
// crash loses at most the line being written.
#pragma once
#include <mpi.h>

#include <cstdio>
#include <string>
#include <vector>

#include "trainer/pipeline_runtime.h"
#include "trainer/train_step.h"
#include "trainer/validation.h"

namespace hg {

// Per-rank costs of one step, in world-rank order (scaling studies, scripts/scaling/sweep).
struct RankStats {
  std::vector<double> pipeline_seconds;  // the schedule's wall time on each rank
  std::vector<double> compute_seconds;   // forward + backward
  std::vector<double> wait_seconds;      // blocked in pipeline receives / send completion
  std::vector<double> grad_sync_seconds;  // data-parallel gradient all-reduce: all of its time
  std::vector<double> grad_sync_exposed_seconds;  // ... of which the backward did not hide
  std::vector<double> peak_rss_mb;       // the process's peak resident memory so far (ru_maxrss)
};

// Collective over `comm`: every rank's stats and peak memory, complete on rank 0 only.
RankStats gather_rank_stats(const PipelineStats& stats, MPI_Comm comm);

class MetricsLog {
 public:
  // Creates parent directories; `append` keeps earlier lines (a resumed run).
  MetricsLog(const std::string& path, bool append);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // `ranks` (optional) adds the arrays "rank_pipeline_seconds", "rank_compute_seconds",
  // "rank_wait_seconds", "rank_grad_sync_seconds", "rank_grad_sync_exposed_seconds" and
  // "rank_peak_rss_mb"; `valid` (optional, a step that was scored) adds "valid_loss",
  // "valid_bpc" and, in joint MatFormer mode, "valid_losses" (ARCHITECTURE.md §9.5).
  void write(const StepMetrics& m, double bubble, int64_t live_micro_batches,
             const RankStats* ranks = nullptr, const ValidationResult* valid = nullptr);

 private:
  std::FILE* file_ = nullptr;
};

}  // namespace hg
