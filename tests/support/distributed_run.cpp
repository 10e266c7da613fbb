#include "tests/support/distributed_run.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/gemm.h"
#include "model/tensor_parallel.h"
#include "model/units.h"
#include "parallel/partition.h"
#include "trainer/distributed_step.h"
#include "trainer/pipeline_runtime.h"

namespace hg::testing {
namespace {

bool close(double a, double b) { return std::fabs(a - b) <= kLayoutTolerance * std::fabs(b); }

// Every bucket's all-reduce started during the final backward, as soon as its last unit finished
// (not later, not at the end of the step), and the stage has several.
std::string bucket_problems(const GradientBuckets& buckets, int64_t s) {
  std::ostringstream out;
  if (buckets.buckets().size() < 2)
    out << "step " << s + 1 << ": " << buckets.buckets().size()
        << " gradient bucket(s), expected several\n";
  for (size_t b = 0; b < buckets.buckets().size(); ++b) {
    const GradientBucket& bucket = buckets.buckets()[b];
    if (bucket.started_at_unit != bucket.ready_unit)
      out << "step " << s + 1 << ": gradient bucket " << b << " (ready after unit "
          << bucket.ready_unit << ") started at " << bucket.started_at_unit << "\n";
  }
  return out.str();
}

// FNV-1a over the bits of every parameter value and AdamW moment of `store` (values only when
// the moments are ZeRO-1 shards: replicas then hold different moments by design).
uint64_t parameter_hash(const ParamStore& store) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const Tensor& t) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(t.data());
    for (int64_t i = 0; i < t.numel() * static_cast<int64_t>(sizeof(float)); ++i)
      h = (h ^ bytes[i]) * 1099511628211ull;
  };
  for (const auto& [name, p] : store.all()) {
    mix(p.value);
    if (p.moments_sharded()) continue;
    mix(p.exp_avg);
    mix(p.exp_avg_sq);
  }
  return h;
}

}  // namespace

DistributedRun run_distributed(const Config& config, MPI_Comm comm, int steps,
                               uint64_t token_seed) {
  DistributedRun r;
  const MatmulPrecisionScope precision(config.train.precision);  // as the trainer sets it
  r.grid = std::make_unique<ProcessGrid>(config.parallel.dp, config.parallel.pp, config.parallel.tp,
                                         comm);
  const ProcessGrid& grid = *r.grid;
  r.comms = make_mpi_communicators(grid);
  const auto plans = plan_units(config.model, config.train.seq_len);
  const auto first =
      partition_units(unit_infos(plans), config.parallel.pp * config.parallel.virtual_stages,
                      static_cast<int>(config.model.stacks.size()), config.parallel.stages);
  r.model = std::make_unique<StageModel>(
      config.model, config.train.seq_len, rank_chunks(first, config.parallel.pp, grid.stage()),
      make_tensor_parallel(grid, r.comms, trained_granularities(config)),
      recompute_blocks(config.train), cpu_backend(), zero_shard(config, grid));
  r.model->params().init_all(config.train.seed);
  PipelineRuntime runtime(*r.model, grid, r.comms, config.parallel.schedule, first, nullptr,
                          grad_bucket_bytes(config.parallel));
  const int64_t row = config.train.seq_len + 1;
  for (int64_t s = 0; s < steps; ++s) {
    // The middle stages get null pointers and must not touch them.
    const std::vector<int32_t> tokens = step_tokens(config, s, token_seed);
    std::vector<TokenBatch> micro = replica_micro_batches(config, grid.dp_rank(), {});
    if (grid.first_stage() || grid.last_stage())
      for (TokenBatch& mb : micro) mb.tokens = tokens.data() + mb.first_sample * row;
    const DistributedStep step = distributed_step(*r.model, runtime, grid, config, s, micro);
    r.metrics.push_back(step.metrics);
    r.max_live.push_back(runtime.stats().max_live);
    r.micro_batches = static_cast<int>(micro.size() * step_granularities(config, s).size());
    if (const GradientBuckets* buckets = runtime.grad_buckets())
      r.bucket_problems += bucket_problems(*buckets, s);
  }
  // Replicas must not drift apart: the same gradient sum, norm and update on each, to the bit.
  const unsigned long long mine = parameter_hash(r.model->params());
  std::vector<unsigned long long> all(grid.dp());
  MPI_Allgather(&mine, 1, MPI_UNSIGNED_LONG_LONG, all.data(), 1, MPI_UNSIGNED_LONG_LONG,
                grid.dp_comm());
  for (unsigned long long h : all) r.replicas_identical = r.replicas_identical && h == mine;
  return r;
}

std::pair<double, double> max_abs_diff(const float* a, const float* b, int64_t n) {
  double err = 0, scale = 0;
  for (int64_t i = 0; i < n; ++i) {
    err = std::max(err, static_cast<double>(std::fabs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(b[i])));
  }
  return {err, scale};
}

std::string compare_with_reference(const DistributedRun& got, const ReferenceRun& ref,
                                   double tensor_tolerance, const std::string& where) {
  std::ostringstream out;
  if (got.metrics.size() != ref.metrics.size())
    return where + ": " + std::to_string(got.metrics.size()) + " steps vs reference " +
           std::to_string(ref.metrics.size()) + "\n";
  const int steps = static_cast<int>(ref.metrics.size());
  for (int s = 0; s < steps; ++s) {
    const StepMetrics& a = got.metrics[s];
    const StepMetrics& b = ref.metrics[s];
    if (!close(a.loss, b.loss))
      out << where << ": step " << s + 1 << " loss " << a.loss << " vs reference " << b.loss
          << "\n";
    if (!close(a.grad_norm, b.grad_norm))
      out << where << ": step " << s + 1 << " grad-norm " << a.grad_norm << " vs reference "
          << b.grad_norm << "\n";
    if (a.losses.size() != b.losses.size())
      out << where << ": step " << s + 1 << " " << a.losses.size() << " width losses vs "
          << b.losses.size() << "\n";
    for (size_t w = 0; w < std::min(a.losses.size(), b.losses.size()); ++w)
      if (!close(a.losses[w], b.losses[w]))
        out << where << ": step " << s + 1 << " width " << w << " loss " << a.losses[w] << " vs "
            << b.losses[w] << "\n";
  }
  // Σ of the learning rates of the run: AdamW moves no element further than about this.
  double lr_steps = 0;
  for (const StepMetrics& m : got.metrics) lr_steps += m.lr;
  const double norm = ref.metrics.back().grad_norm;
  int checked = 0;
  for (const auto& [name, p] : got.model->params().all()) {
    if (!ref.model->params().contains(name)) {
      out << where << ": parameter " << name << " is not in the reference\n";
      continue;
    }
    const Param& q = ref.model->params().at(name);
    if (p.canonical_shape != q.value.shape() ||
        p.value.shape() != local_shape(q.value.shape(), p.slice)) {
      out << where << ": " << name << " shape " << shape_string(p.value.shape()) << " (canonical "
          << shape_string(p.canonical_shape) << ") vs reference " << shape_string(q.value.shape())
          << "\n";
      continue;
    }
    Tensor value(p.value.shape()), grad(p.value.shape());
    take_slice(value.data(), q.value, p.slice);
    take_slice(grad.data(), q.grad, p.slice);
    // The last step's gradients (clipped alike) first: relative to the tensor's largest, with a
    // floor of 1e-4 of the global norm (below it, rounding noise of zero gradients).
    // ZeRO-1: only this replica's shard of the gradient holds the replicas' sum.
    const auto [grad_err, grad_scale] =
        max_abs_diff(p.grad.data() + p.shard_offset, grad.data() + p.shard_offset,
                     p.shard_numel());
    if (!(grad_err <= tensor_tolerance * std::max(grad_scale, 1e-4 * norm)))
      out << where << ": " << name << " step " << steps << " gradient: max |diff| " << grad_err
          << " > " << tensor_tolerance << " x scale " << grad_scale << "\n";
    // Values relative to the tensor's max |value|, at least 1e-2 so that tensors still near their
    // zero init are not held to float32 noise.
    auto [err, scale] = max_abs_diff(p.value.data(), value.data(), value.numel());
    scale = std::max(scale, 1e-2);
    // A gradient that is zero in exact arithmetic (attn/proj/bias: a chunk softmax does not see a
    // bias shared by its rows) is rounding noise of ~1e-11 that depends on the summation order
    // (the data-parallel all-reduce changes it); AdamW normalises that noise into steps of up to
    // lr, so such a tensor is only held to 1% of the distance AdamW could have moved it.
    const bool noise_gradient = grad_scale < 1e-8 * norm;
    const double allowed = noise_gradient ? 1e-2 * lr_steps : tensor_tolerance * scale;
    if (!(err <= allowed))
      out << where << ": " << name << " after " << steps << " steps: max |diff| " << err << " > "
          << allowed << (noise_gradient ? " (noise gradient)" : "") << " (scale " << scale << ")\n";
    ++checked;
  }
  if (checked == 0) out << where << ": no parameters on this rank\n";
  return out.str();
}

std::string check_live(const DistributedRun& got, ScheduleKind kind, const std::string& where) {
  const std::string schedule = schedule_name(kind);
  const int m = got.micro_batches;
  const int pp = got.grid->pp(), stage = got.grid->stage(), v = got.model->chunks();
  // Interleaved: Megatron's warm-up forwards plus one, (micro-batch, chunk) pairs (schedule.h).
  const int64_t expected = schedule == "gpipe" ? m
                           : schedule == "interleaved"
                               ? std::min(2 * (pp - stage - 1) + (v - 1) * pp + 1, m * v)
                               : std::min(pp - stage, m);
  std::ostringstream out;
  for (size_t s = 0; s < got.max_live.size(); ++s)
    if (got.max_live[s] != expected)
      out << where << ": step " << s + 1 << " max live micro-batches " << got.max_live[s]
          << ", expected " << expected << " (" << schedule << ", m " << m << ")\n";
  if (schedule == "1f1b" && stage == 0 && m >= pp && got.max_live.at(0) > pp)
    out << where << ": 1F1B first stage keeps " << got.max_live[0] << " > pp micro-batches\n";
  return out.str();
}

std::string check_data_parallel(const DistributedRun& got, const std::string& where) {
  std::string out;
  std::istringstream lines(got.bucket_problems);
  for (std::string line; std::getline(lines, line);) out += where + ": " + line + "\n";
  if (!got.replicas_identical)
    out += where + ": data-parallel replicas' parameters differ in bits\n";
  return out;
}

}  // namespace hg::testing
