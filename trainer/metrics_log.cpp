#include "trainer/metrics_log.h"

#include <filesystem>
#include <stdexcept>

namespace hg {

MetricsLog::MetricsLog(const std::string& path, bool append) {
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  file_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (!file_) throw std::runtime_error("cannot open metrics file " + path);
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write(const StepMetrics& m, double bubble, int64_t live_micro_batches) {
  std::fprintf(file_,
               "{\"step\": %ld, \"loss\": %.9g, \"bpc\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, "
               "\"tokens\": %ld, \"seconds\": %.6f, \"bubble\": %.4f, \"live_micro_batches\": %ld",
               long(m.step), m.loss, m.bpc, m.lr, m.grad_norm, long(m.tokens), m.seconds, bubble,
               long(live_micro_batches));
  if (!m.losses.empty()) {
    std::fprintf(file_, ", \"losses\": [");
    for (size_t i = 0; i < m.losses.size(); ++i)
      std::fprintf(file_, "%s%.9g", i ? ", " : "", m.losses[i]);
    std::fprintf(file_, "]");
  }
  if (m.granularity > 0) std::fprintf(file_, ", \"granularity\": %d", m.granularity);
  std::fprintf(file_, "}\n");
  std::fflush(file_);
}

}  // namespace hg
