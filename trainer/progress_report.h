// Rank 0's view of a training run as it goes: every step into the metrics file (log.metrics) and
// the TensorBoard event file (log.tensorboard), and every log.every steps (and the first, the last
// and every scored one) a console line with loss, bpc, speed, bubble and ETA over the steps since
// the previous line, plus the validation line.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "parallel/grid.h"
#include "trainer/config.h"
#include "trainer/distributed_step.h"
#include "trainer/metrics_log.h"
#include "trainer/pipeline_runtime.h"
#include "trainer/tensorboard_log.h"
#include "trainer/validation.h"

namespace hg {

// "12s", "3m05s", "2h07m"; "?" for a negative or non-finite time.
std::string format_duration(double seconds);

class ProgressReport {
 public:
  // Rank 0 opens the files (a resumed run, start_step > 0, appends to the metrics file).
  ProgressReport(const Config& config, const ProcessGrid& grid, int64_t start_step);

  // Collective (gathers every rank's statistics). `valid`: the step's validation, if scored.
  void step(const DistributedStep& step, const PipelineStats& stats, const ValidationResult* valid);

 private:
  // What TensorBoard plots of a step: the metrics line's numbers under "train/", "valid/" and
  // "pipeline/" (joint MatFormer: a loss per granularity g as train/loss_g<g>).
  std::vector<std::pair<std::string, double>> scalars(const StepMetrics& m, double bubble,
                                                      const ValidationResult* valid) const;

  const Config& config_;
  int64_t start_step_ = 0;
  std::unique_ptr<MetricsLog> log_;
  std::unique_ptr<TensorBoardLog> tensorboard_;
  double tokens_per_step_ = 0, theory_bubble_ = 0;
  double window_seconds_ = 0;
  int64_t window_steps_ = 0;
};

}  // namespace hg
