// What `hourglass plan` prints: the ranked table, the CSV of every layout, the calibration's
// unit times (stdout), and the number formats they share.
#pragma once
#include <string>

#include "plan/calibration.h"
#include "plan/cluster.h"
#include "trainer/config.h"

namespace hg {

struct PlanResult;

// "1.23 GB/s": three significant digits and an SI prefix before `unit`.
std::string si(double value, const char* unit);

// Every layout, feasible or not, one line each (plan.format = csv).
void print_csv(const PlanResult& r);
// The model, the cluster, then the best plan.top layouts, and the layouts not evaluated and why.
void print_table(const PlanResult& r, const Config& config, const ClusterSpec& cluster,
                 const PlanOptions& options);
// What --calibrate measured, unit by unit, and where it was written.
void print_calibration(const Calibration& c, int repeats, const std::string& path);

}  // namespace hg
