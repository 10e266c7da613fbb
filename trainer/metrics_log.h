// The metrics file (log.metrics): one JSON object per update, appended and flushed at once so a
// crash loses at most the line being written.
#pragma once
#include <cstdio>
#include <string>

#include "trainer/train_step.h"

namespace hg {

class MetricsLog {
 public:
  // Creates parent directories; `append` keeps earlier lines (a resumed run).
  MetricsLog(const std::string& path, bool append);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  void write(const StepMetrics& m, double bubble, int64_t live_micro_batches);

 private:
  std::FILE* file_ = nullptr;
};

}  // namespace hg
