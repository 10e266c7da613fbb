// Executes a pipeline schedule (parallel/schedule.h) for one training step on this rank's stage:
// receives are posted a bounded window ahead (two compute ops), each compute op waits for exactly
// the receives its micro-batch needs, sends are non-blocking, own their buffers until MPI reports
// them complete (tested after every compute op) and are all completed at the end of the step.
// Results are moved, never copied, into the sends. The same runtime runs pp = 1 (a list with no
// communication). Messages go through the pipeline group's Communicator (peers = stage ranks), the
// data-parallel sum through the data-parallel group's (parallel/communicator.h).
#pragma once
#include <map>
#include <memory>
#include <vector>

#include "model/stage_model.h"
#include "parallel/communicator.h"
#include "parallel/grad_buckets.h"
#include "parallel/grid.h"
#include "parallel/partition.h"
#include "parallel/schedule.h"
#include "parallel/trace.h"
#include "trainer/train_step.h"

namespace hg {

// The unit list as the partitioner sees it.
std::vector<UnitInfo> unit_infos(const std::vector<UnitPlan>& plans);

struct PipelineStats {
  double step_seconds = 0;     // wall time of the schedule on this rank (without grad_sync's
                               // exposed part, which follows it)
  double compute_seconds = 0;  // forward + backward
  double wait_seconds = 0;     // blocked in receives and final send completion
  int64_t max_live = 0;  // max (micro-batch, chunk) pairs with activations alive on this stage
  // Process CPU time inside forward / backward: with one thread per rank, the time an idle core
  // would have taken, so a benchmark on a shared machine can simulate the uncontended schedule.
  double forward_cpu_seconds = 0;
  double backward_cpu_seconds = 0;  // B (the whole backward unless zbh1)
  double weight_cpu_seconds = 0;    // zbh1's W
  GradientSyncStats grad_sync;  // data-parallel gradient all-reduce (dp > 1), grad_buckets.h
};

class PipelineRuntime {
 public:
  // stage_first: the partition into pp·v (virtual) stages, v = model.chunks() (1 unless the
  // schedule is interleaved; chunk c of this rank is virtual stage c·pp + stage).
  // With dp > 1 the gradients are summed over the replicas during the step's final backward, in
  // buckets of grad_bucket_bytes (parallel.grad_bucket_mb), and hold the sums when run returns:
  // under interleaving each chunk's buckets start during that chunk's final backward.
  // comms: the grid's groups (make_mpi_communicators); pp and dp are borrowed and must outlive
  // the runtime.
  PipelineRuntime(StageModel& model, const ProcessGrid& grid, const GridCommunicators& comms,
                  ScheduleKind kind, std::vector<int> stage_first, TraceRecorder* trace,
                  int64_t grad_bucket_bytes = int64_t{4} << 20);

  // Runs the step: micro_batches describe every micro-batch of this replica (tokens may be null
  // on stages that do not read data); each is run once per entry of `granularities`. Gradients
  // accumulate into the model's store (zeroed first), summed over the data-parallel replicas.
  // Returns the loss sums per granularity
  // entry (non-zero on the last stage only).
  std::vector<double> run(const StepContext& ctx, const std::vector<TokenBatch>& micro_batches,
                          const std::vector<int>& granularities,
                          const std::vector<SubmodelWidths>& widths);

  // Evaluation: the forward alone over the same stages (make_forward_schedule), without dropout;
  // each (micro-batch, chunk) drops its caches as soon as its forward is done. Returns the loss
  // sums per granularity entry (non-zero on the last stage only). Gradients, the gradient
  // buckets and stats() (the last training step's) are left as they were.
  std::vector<double> evaluate(const std::vector<TokenBatch>& micro_batches,
                               const std::vector<int>& granularities,
                               const std::vector<SubmodelWidths>& widths);

  const PipelineStats& stats() const { return stats_; }
  const std::vector<SkipEdge>& skips() const { return skips_; }
  const GradientBuckets* grad_buckets() const { return grad_buckets_.get(); }  // null if dp = 1
  // ZeRO-1 (the store's moments sharded over dp, parallel.zero 1): run() leaves each replica the
  // sum of its own gradient shards only; after the update this all-gathers the updated value
  // shards so every replica holds full parameters. A no-op otherwise.
  void allgather_params();

 private:
  // What one step holds between its instructions: the schedule, the posted receives, the sends in
  // flight, the slots and the results not yet sent (defined in the .cpp).
  struct Step;

  Shape activation_shape(int unit, int64_t batch) const;  // input of `unit`
  // Chunk c of this rank is virtual stage c·pp + stage.
  int virtual_stage(const Instruction& ins) const { return ins.chunk * grid_.pp() + grid_.stage(); }
  // The phases of run(), in the order it calls them.
  void execute_all(Step& step);  // the whole list, then every send completed
  void index_compute_ops(Step& step) const;
  void execute(Step& step, size_t i);
  void post_recvs_ahead(Step& step);
  void post_recvs_before(Step& step, size_t end);
  void post_recv(Step& step, size_t i);
  void set_list(Step& step, std::vector<std::vector<Instruction>>&& lists) const;
  void take_recvs(Step& step, size_t end, int mb, int chunk, Slot& slot, Tensor& activation);
  void run_forward(Step& step, size_t i);
  void run_backward(Step& step, size_t i);
  void run_weight_gradients(Step& step, size_t i);
  void send(Step& step, Tensor&& t, const Instruction& ins, const char* what);
  void progress_sends(Step& step);
  void complete_sends(Step& step);
  void finish_gradient_sync();
  // Wall and CPU time of one compute op into stats_, and its trace event.
  template <class Compute>
  void timed_compute(const std::string& name, TraceCategory category, int mb, double& cpu_seconds,
                     Compute&& compute);
  // Time blocked in `wait` into stats_.wait_seconds, and its trace event.
  template <class Wait>
  void timed_wait(const char* name, TraceCategory category, int mb, Wait&& wait);

  StageModel& model_;
  Device device_;  // the model's, and the memory of every message buffer
  const ProcessGrid& grid_;
  Communicator& pp_comm_;  // rank = pipeline stage: a schedule's peer_stage
  ScheduleKind kind_;
  std::vector<int> first_;  // [pp·v + 1] virtual stage boundaries
  int virtual_stages_ = 1;
  std::vector<SkipEdge> skips_;   // between virtual stages
  std::map<int, int> skip_rows_;  // level -> rows of the skip
  TraceRecorder* trace_;
  std::unique_ptr<GradientBuckets> grad_buckets_;  // dp > 1 only
  PipelineStats stats_;
};

}  // namespace hg
