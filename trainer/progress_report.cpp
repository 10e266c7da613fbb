#include "trainer/progress_report.h"

#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "parallel/schedule.h"

namespace hg {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", long(s / 3600), long(s / 60 % 60));
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", long(s / 60), long(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lds", long(s));
  return buf;
}

ProgressReport::ProgressReport(const Config& config, const ProcessGrid& grid, int64_t start_step)
    : config_(config), start_step_(start_step) {
  const Config& c = config;
  tokens_per_step_ = static_cast<double>(c.train.batch) * c.train.seq_len;
  theory_bubble_ = theoretical_bubble(c.parallel.schedule, c.parallel.pp,
                                      c.train.batch / c.parallel.dp / c.train.micro_batch,
                                      c.parallel.virtual_stages);
  if (grid.rank() != 0) return;
  log_ = std::make_unique<MetricsLog>(
      c.log.metrics.empty() ? (std::filesystem::path(c.run.dir) / "metrics.jsonl").string()
                            : c.log.metrics,
      start_step > 0);
  if (!c.log.tensorboard.empty()) {
    tensorboard_ = std::make_unique<TensorBoardLog>(c.log.tensorboard);
    std::printf("tensorboard %s (tensorboard --logdir %s)\n", tensorboard_->path().c_str(),
                c.log.tensorboard.c_str());
  }
}

void ProgressReport::step(const DistributedStep& step, const PipelineStats& stats,
                          const ValidationResult* valid) {
  const StepMetrics& m = step.metrics;
  window_seconds_ += m.seconds;
  ++window_steps_;
  const RankStats rank_stats = gather_rank_stats(stats, MPI_COMM_WORLD);
  if (!log_) return;
  log_->write(m, step.bubble, stats.max_live, &rank_stats, valid);
  if (tensorboard_) tensorboard_->write(m.step, scalars(m, step.bubble, valid));
  const Config& c = config_;
  const bool last = m.step == c.train.steps, first = m.step == start_step_ + 1;
  if (!(c.log.every > 0 && m.step % c.log.every == 0) && !last && !first && !valid) return;
  const double per_step = window_seconds_ / window_steps_;
  std::printf(
      "step %5ld/%ld | loss %.4f | bpc %.4f | lr %.2e | grad-norm %.3f | %.0f tok/s"
      " | bubble %.2f (theory %.2f) | ETA %s\n",
      long(m.step), long(c.train.steps), m.loss, m.bpc, m.lr, m.grad_norm,
      tokens_per_step_ / per_step, step.bubble, theory_bubble_,
      format_duration(per_step * (c.train.steps - m.step)).c_str());
  if (valid)
    std::printf("step %5ld/%ld | valid loss %.4f | valid bpc %.4f | %ld windows of %s in %.2f s\n",
                long(m.step), long(c.train.steps), valid->loss, valid->loss / std::log(2.0),
                long(valid->windows), c.eval.split.c_str(), valid->seconds);
  std::fflush(stdout);
  window_seconds_ = 0;
  window_steps_ = 0;
}

std::vector<std::pair<std::string, double>> ProgressReport::scalars(
    const StepMetrics& m, double bubble, const ValidationResult* valid) const {
  const double tokens_per_second = m.seconds > 0 ? tokens_per_step_ / m.seconds : 0;
  std::vector<std::pair<std::string, double>> out = {{"train/loss", m.loss},
                                                     {"train/bpc", m.bpc},
                                                     {"train/lr", m.lr},
                                                     {"train/grad_norm", m.grad_norm},
                                                     {"train/tokens_per_second", tokens_per_second},
                                                     {"pipeline/bubble", bubble}};
  const ModelConfig& model = config_.model;
  const int G = model.submodels();
  for (int i = 0; i < static_cast<int>(m.losses.size()) && i < G; ++i)
    out.push_back({"train/loss_" + model.submodel_name(i), m.losses[i]});
  if (valid) {
    out.push_back({"valid/loss", valid->loss});
    out.push_back({"valid/bpc", valid->loss / std::log(2.0)});
    for (int i = 0; i < static_cast<int>(valid->losses.size()) && i < G; ++i)
      out.push_back({"valid/loss_" + model.submodel_name(i), valid->losses[i]});
  }
  return out;
}

}  // namespace hg
