#include "trainer/metrics_log.h"

#include <sys/resource.h>

#include <cmath>
#include <filesystem>
#include <stdexcept>

#include "parallel/comm.h"

namespace hg {

RankStats gather_rank_stats(const PipelineStats& stats, MPI_Comm comm) {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  constexpr int kFields = 6;
  const double mine[kFields] = {stats.step_seconds,
                                stats.compute_seconds,
                                stats.wait_seconds,
                                stats.grad_sync.seconds(),
                                stats.grad_sync.exposed_seconds,
                                usage.ru_maxrss / 1024.0};  // Linux reports KiB
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  std::vector<double> all(rank == 0 ? kFields * size : 0);
  comm::gather(mine, sizeof mine, all.data(), 0, comm, "gather rank statistics");
  RankStats out;
  for (int r = 0; rank == 0 && r < size; ++r) {
    const double* theirs = &all[kFields * r];
    out.pipeline_seconds.push_back(theirs[0]);
    out.compute_seconds.push_back(theirs[1]);
    out.wait_seconds.push_back(theirs[2]);
    out.grad_sync_seconds.push_back(theirs[3]);
    out.grad_sync_exposed_seconds.push_back(theirs[4]);
    out.peak_rss_mb.push_back(theirs[5]);
  }
  return out;
}

MetricsLog::MetricsLog(const std::string& path, bool append) {
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  file_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (!file_) throw std::runtime_error("cannot open metrics file " + path);
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write(const StepMetrics& m, double bubble, int64_t live_micro_batches,
                       const RankStats* ranks, const ValidationResult* valid) {
  std::fprintf(file_,
               "{\"step\": %ld, \"loss\": %.9g, \"bpc\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, "
               "\"tokens\": %ld, \"seconds\": %.6f, \"bubble\": %.4f, \"live_micro_batches\": %ld",
               long(m.step), m.loss, m.bpc, m.lr, m.grad_norm, long(m.tokens), m.seconds, bubble,
               long(live_micro_batches));
  auto array = [&](const char* key, const std::vector<double>& values, const char* format) {
    std::fprintf(file_, ", \"%s\": [", key);
    for (size_t i = 0; i < values.size(); ++i) {
      if (i) std::fprintf(file_, ", ");
      std::fprintf(file_, format, values[i]);
    }
    std::fprintf(file_, "]");
  };
  if (!m.losses.empty()) array("losses", m.losses, "%.9g");
  if (m.granularity > 0) std::fprintf(file_, ", \"granularity\": %d", m.granularity);
  if (m.head_granularity > 0) std::fprintf(file_, ", \"head_granularity\": %d", m.head_granularity);
  if (valid) {
    std::fprintf(file_, ", \"valid_loss\": %.9g, \"valid_bpc\": %.9g", valid->loss,
                 valid->loss / std::log(2.0));
    if (!valid->losses.empty()) array("valid_losses", valid->losses, "%.9g");
  }
  if (ranks) {
    array("rank_pipeline_seconds", ranks->pipeline_seconds, "%.6f");
    array("rank_compute_seconds", ranks->compute_seconds, "%.6f");
    array("rank_wait_seconds", ranks->wait_seconds, "%.6f");
    array("rank_grad_sync_seconds", ranks->grad_sync_seconds, "%.6f");
    array("rank_grad_sync_exposed_seconds", ranks->grad_sync_exposed_seconds, "%.6f");
    array("rank_peak_rss_mb", ranks->peak_rss_mb, "%.1f");
  }
  std::fprintf(file_, "}\n");
  std::fflush(file_);
}

}  // namespace hg
