// The distributed side of the layout-equivalence tests: `steps` distributed_step()s of config's
// (dp, pp, tp) layout on the deterministic tokens of reference_run.h, and the checks of such a run
// against single_process_run() and against itself (activations kept, data-parallel buckets and
// replicas). Every check returns what it found wrong, one line each, prefixed by `where`.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/stage_model.h"
#include "parallel/communicator.h"
#include "parallel/grid.h"
#include "tests/support/reference_run.h"
#include "trainer/config.h"
#include "trainer/train_step.h"

namespace hg::testing {

// What a layout must reproduce: this many steps of the reference, losses and grad norms within
// this relative tolerance (tensors too, unless a test states why its layout needs more).
constexpr int kLayoutSteps = 5;
constexpr double kLayoutTolerance = 1e-5;

struct DistributedRun {
  std::vector<StepMetrics> metrics;  // per step
  std::vector<int64_t> max_live;     // per step: most micro-batches alive on this stage at once
  int micro_batches = 0;  // schedule entries per replica and step (micro-batches × widths)
  std::unique_ptr<ProcessGrid> grid;  // outlives the model (its store uses tp_comm)
  GridCommunicators comms;            // the grid's groups, made once after it
  std::unique_ptr<StageModel> model;  // this rank's stage and slices, after the last step
  // dp > 1: this rank's parameters and AdamW moments have the same bits on every replica.
  bool replicas_identical = true;
  std::string bucket_problems;  // dp > 1: lines on gradient buckets that started late, or too few
};

// Collective over `comm` (dp · pp · tp ranks, as config.parallel says). Tokens only where a stage
// reads them, as train_main: embed on the first stage, targets on the last.
DistributedRun run_distributed(const Config& config, MPI_Comm comm, int steps, uint64_t token_seed);

// max |a − b| and max |b| over n elements.
std::pair<double, double> max_abs_diff(const float* a, const float* b, int64_t n);

// Per-step loss, width losses and grad norm within kLayoutTolerance relative; then every local
// tensor's last gradient and final value against the same slice of the reference's tensor of the
// same name, max |a − b| within `tensor_tolerance` of the tensor's scale.
std::string compare_with_reference(const DistributedRun& got, const ReferenceRun& ref,
                                   double tensor_tolerance, const std::string& where);

// The live micro-batch count of every step: 1F1B holds min(pp − stage, m) on stage `stage`, GPipe
// all m, interleaved min(2(pp − stage − 1) + (v − 1)·pp + 1, m·v) (micro-batch, chunk) pairs
// (schedule.h).
std::string check_live(const DistributedRun& got, ScheduleKind schedule,
                       const std::string& where);

// dp > 1: replicas bit-identical, and every gradient bucket's all-reduce started as soon as its
// last unit's final backward had finished.
std::string check_data_parallel(const DistributedRun& got, const std::string& where);

}  // namespace hg::testing
