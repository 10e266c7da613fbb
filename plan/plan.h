// `hourglass plan`: ranks parallel layouts (dp, pp, tp, micro-batch, schedule) of one model on
// one cluster by predicted step time, without running them (docs/scaling.md). The room's
// concepts, one file each: the cluster and the planner's options (cluster.h), unit times
// measured on this machine (calibration.h), what one layout costs (predict.h), the printed table
// and CSV (report.h); here the search over layouts and the command.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "plan/calibration.h"
#include "plan/cluster.h"
#include "plan/predict.h"
#include "trainer/config.h"

namespace hg {

struct PlanResult {
  std::vector<LayoutPlan> layouts;  // sorted: fitting first, by step time
  double model_flops_per_step = 0;  // cost model, forward + backward
  int64_t params = 0;
  int world = 0;
  std::vector<std::string> skipped;  // (dp, pp, tp) combinations not evaluated, and why
};

PlanResult plan_layouts(const Config& config, const ClusterSpec& cluster,
                        const PlanOptions& options);

// `hourglass plan [--config FILE] [--section.key value ...] [--cluster FILE.ini]
// [--cluster.key value ...] [--plan.key value ...] [--calibrate]`. Returns an exit code.
int plan_main(const std::vector<std::string>& args);

}  // namespace hg
