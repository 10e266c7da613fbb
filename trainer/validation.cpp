#include "trainer/validation.h"

#include <mpi.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "data/dataset.h"
#include "data/eval_windows.h"
#include "parallel/comm.h"

namespace hg {

Validation::Validation(const Config& config, const ProcessGrid& grid)
    : config_(config), grid_(grid) {
  if (config.eval.every == 0) return;
  const int L = config.train.seq_len;
  // Every rank opens the split (metadata only) so that all of them know its window count without
  // a collective: setup may throw on some ranks, and a collective then would hang the others.
  require(!config.data.dir.empty(),
          "eval.every = " + std::to_string(config.eval.every) +
              " needs data.dir (a directory made by `hourglass prep`); give --data.dir DIR or "
              "set --eval.every 0");
  const TokenDataset data(config.data.dir, config.eval.split);
  require_vocabulary_fits(data, "data.dir " + config.data.dir, config.model.vocab_size,
                          "model.vocab_size",
                          "set --model.vocab_size " + std::to_string(data.vocab_size()));
  const int64_t available = eval_window_count(data.num_tokens(), L);
  require(available > 0, "eval.split = " + config.eval.split + " of " + config.data.dir +
                             " holds " + std::to_string(data.num_tokens()) +
                             " tokens: too few for one window of " + std::to_string(L + 1) +
                             "; use another split or --eval.every 0");
  total_windows_ = std::min(config.eval.windows, available);
  const int64_t first = total_windows_ * grid.dp_rank() / grid.dp();
  const int64_t count = total_windows_ * (grid.dp_rank() + 1) / grid.dp() - first;
  const bool reads_tokens = grid.first_stage() || grid.last_stage();
  if (reads_tokens) {
    tokens_.resize(static_cast<size_t>(count * (L + 1)));
    if (count > 0) read_eval_windows(data, L, first, count, tokens_.data());
  }
  for (int64_t w = 0; w < count; w += config.train.micro_batch) {
    TokenBatch batch;
    batch.sequences = std::min<int64_t>(config.train.micro_batch, count - w);
    batch.first_sample = first + w;
    if (reads_tokens) batch.tokens = tokens_.data() + w * (L + 1);
    batches_.push_back(batch);
  }
  granularities_ = {-1};
  if (config.train.matformer == Matformer::Joint)
    for (int i = 0; i < config.model.submodels(); ++i)
      if (!config.model.full_submodel(i)) granularities_.push_back(i);  // scored already
}

bool Validation::due(int64_t step) const {
  return config_.eval.every > 0 && (step % config_.eval.every == 0 || step == config_.train.steps);
}

ValidationResult Validation::run(PipelineRuntime& runtime) const {
  const double t0 = MPI_Wtime();
  std::vector<double> sums(granularities_.size(), 0.0);
  // A replica with no window (eval.windows < dp) skips the forward: all of its stages agree.
  if (!batches_.empty())
    sums = runtime.evaluate(batches_, granularities_, submodel_widths(config_.model));
  // Loss sums live on each replica's last stage (tensor-parallel rank 0 counts them once).
  if (!grid_.last_stage() || grid_.tp_rank() != 0) std::fill(sums.begin(), sums.end(), 0.0);
  comm::allreduce_sum(sums.data(), static_cast<int64_t>(sums.size()), grid_.world());
  const double tokens = static_cast<double>(total_windows_) * config_.train.seq_len;
  ValidationResult result;
  result.loss = sums[0] / tokens;
  result.windows = total_windows_;
  if (granularities_.size() > 1 || config_.train.matformer == Matformer::Joint) {
    size_t next = 1;
    for (int i = 0; i < config_.model.submodels(); ++i)
      result.losses.push_back(config_.model.full_submodel(i) ? result.loss
                                                             : sums.at(next++) / tokens);
  }
  result.seconds = MPI_Wtime() - t0;
  return result;
}

}  // namespace hg
