// Unit times measured on this machine (`hourglass plan --calibrate`), the calibration file that
// keeps them, and the lookup the prediction prices units from (docs/scaling.md).
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "plan/cluster.h"
#include "trainer/config.h"

namespace hg {

// One unit's measured time per micro-batch of `micro_batch` sequences (seconds).
struct UnitTiming {
  std::string name;
  int micro_batch = 1;
  int concurrency = 1;  // copies of the calibration running at once on the machine
  int tp = 1;           // the unit as built for this tensor-parallel size (rank 0's shard)
  // `backward` is the fused backward, timed as before zbh1 existed: gpipe, 1f1b and interleaved
  // run exactly that, so their predictions keep their meaning and old files stay comparable.
  // zbh1 runs something else: B, the backward with the weight-gradient products recorded
  // (operand copies included), and W, those products later with their operands out of cache;
  // neither is fused minus the other, so both are timed, in a pass of their own.
  double forward = 0, backward = 0;
  double update = 0;  // zeroing, norm and AdamW of the unit's parameters
  // zbh1's B and W; < 0 in a file written before they were measured: the prediction then splits
  // `backward` by the weight-gradient products' share of its FLOPs (UnitPlan::weight_flops).
  double input = -1, weight = -1;
};

struct Calibration {
  std::string model_key;  // the [model] section and seq_len it was measured for, on one line
  int threads = 1;
  std::string statistic = "median";  // of the repeats: median | min
  std::vector<UnitTiming> units;
};

// Times every unit alone (one StageModel per unit, chained through one Slot, the update of
// every unit after each backward as in a step; a second such pass times zbh1's B and W) at every
// micro-batch size of `micro_batches`,
// with `options.concurrency` copies running at once (each level needs that many - 1 started in
// `copies`) and as the rank-0 shard of each of `options.tp_sizes`; keeps the median of
// `options.repeats` passes, or the minimum when `options.statistic` is "min" (other processes
// only ever add time: the fastest repeat is the least disturbed). The settings are interleaved:
// each repeat is one pass over every (concurrency, tp, micro-batch), so that a machine whose
// speed drifts over seconds (neighbours on shared cores) biases every setting alike instead of
// whichever block of repeats it happened to hit. With tp > 1 the units are rank 0's shards, their
// all-reduces over MPI_COMM_SELF (MPI must be initialised): the compute of a shard, which for
// small matrices is more than 1/tp of the whole.
class CalibrationCopies;
// UsageError unless `options` can be calibrated: plan.repeats and every plan.concurrency entry at
// least 1, every plan.tp_sizes entry a tensor-parallel size the model splits into.
void require_calibration_options(const Config& config, const PlanOptions& options);
Calibration calibrate(const Config& config, const std::vector<int>& micro_batches,
                      const PlanOptions& options, CalibrationCopies* copies = nullptr);

// Copies of the calibration's work in forked processes (fork before MPI is initialised), to
// time units while other ranks of the node compute, as they share its caches and memory
// bandwidth (on this machine two ranks compute 10-40% slower each than one alone).
class CalibrationCopies {
 public:
  CalibrationCopies(const Config& config, const std::vector<int>& micro_batches, int count);
  ~CalibrationCopies();  // kills them
  CalibrationCopies(const CalibrationCopies&) = delete;
  CalibrationCopies& operator=(const CalibrationCopies&) = delete;
  void run(int count);  // the first `count` copies run, the others are stopped

 private:
  std::vector<int> pids_;
};
void write_calibration(const std::string& path, const Calibration& calibration);
Calibration read_calibration(const std::string& path);  // UsageError if missing or malformed
std::string calibration_model_key(const Config& config);

// A micro-batch's forward / backward time of one unit from a calibration: built for this tp
// if measured (else tp 1, and the caller divides), with the most copies at once not above
// `concurrency` (else the fewest), at this micro-batch size, else the nearest size scaled
// linearly.
struct CalibrationIndex {
  std::map<std::string, std::vector<UnitTiming>> by_unit;

  // second: whether the timing is of this tp's shard.
  std::pair<const UnitTiming*, bool> nearest(const std::string& unit, int micro_batch,
                                             int concurrency, int tp) const;
};

}  // namespace hg
