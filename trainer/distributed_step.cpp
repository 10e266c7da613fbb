#include "trainer/distributed_step.h"

#include <mpi.h>

#include <algorithm>
#include <cmath>

#include "parallel/comm.h"
#include "trainer/optimizer.h"

namespace hg {

std::vector<TokenBatch> replica_micro_batches(const Config& config, int dp_rank,
                                              const std::vector<MicroBatch>& loaded) {
  const std::vector<MicroBatch> positions =
      loaded.empty() ? replica_micro_batches(config.train.batch, config.parallel.dp, dp_rank,
                                             config.train.micro_batch)
                     : std::vector<MicroBatch>();
  const std::vector<MicroBatch>& from = loaded.empty() ? positions : loaded;
  std::vector<TokenBatch> batches(from.size());
  for (size_t j = 0; j < from.size(); ++j) {
    batches[j].sequences = from[j].sequences;
    batches[j].first_sample = from[j].first_sample;
    if (!from[j].tokens.empty()) batches[j].tokens = from[j].tokens.data();
  }
  return batches;
}

DistributedStep distributed_step(StageModel& model, PipelineRuntime& runtime,
                                 const ProcessGrid& grid, const Config& config, int64_t s,
                                 const std::vector<TokenBatch>& micro_batches) {
  const double t0 = MPI_Wtime();
  const double tokens_per_step = static_cast<double>(config.train.batch) * config.train.seq_len;
  const StepContext ctx = make_step_context(config, s);
  const auto granularities = step_granularities(config, s);
  const auto widths = submodel_widths(config.model);
  std::vector<double> loss_sums;
  {
    const WeightCopiesScope weight_copies = step_weight_copies(model.params());
    loss_sums = runtime.run(ctx, micro_batches, granularities, widths);
  }

  // The loss scale divides by the global token count, so the global gradient is the sum of the
  // replicas' gradients: the runtime has summed them (grad_buckets.h) during the backward.
  // Loss sums live on each replica's last stage; the grad norm sums the tensor-parallel slices
  // and the stages of one pipeline (each canonical parameter counted once: grad_sum_squares
  // counts replicated tensors on tensor-parallel rank 0 only).
  if (!grid.last_stage() || grid.tp_rank() != 0) std::fill(loss_sums.begin(), loss_sums.end(), 0.0);
  comm::allreduce_sum(loss_sums.data(), static_cast<int64_t>(loss_sums.size()), grid.world());
  // ZeRO-1: each replica holds the summed gradient of its own shards only, so the norm sums the
  // replicas too (each canonical element still once), and the update touches the shards.
  const bool sharded = model.params().shard_count() > 1;
  double norm_sq = grad_sum_squares(model.params());
  if (sharded) comm::allreduce_sum(&norm_sq, 1, grid.dp_comm());
  if (grid.tp() > 1) comm::allreduce_sum(&norm_sq, 1, grid.tp_comm());
  comm::allreduce_sum(&norm_sq, 1, grid.pp_comm());

  DistributedStep out;
  fill_step_losses(out.metrics, loss_sums, granularities, config.model, tokens_per_step);
  const double norm = std::sqrt(norm_sq);
  out.metrics.step = s + 1;
  out.metrics.grad_norm = norm;
  out.finite = std::isfinite(out.metrics.loss) && std::isfinite(norm);
  if (out.finite) {
    apply_update(model.params(), config.train, s, norm, out.metrics);
    runtime.allgather_params();  // ZeRO-1: every replica's updated shards to all
  }
  out.metrics.tokens = static_cast<int64_t>(tokens_per_step * (s + 1));
  out.metrics.seconds = MPI_Wtime() - t0;

  double compute = runtime.stats().compute_seconds, slowest = runtime.stats().step_seconds;
  comm::allreduce_sum(&compute, 1, grid.pp_comm());
  comm::allreduce_max(&slowest, 1, grid.pp_comm());
  out.bubble = slowest > 0 ? 1.0 - compute / (grid.pp() * slowest) : 0.0;
  return out;
}

}  // namespace hg
