#include "plan/predict.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/error.h"
#include "model/tensor_parallel.h"
#include "model/unit_factories.h"
#include "plan/report.h"
#include "trainer/pipeline_runtime.h"

namespace hg {
namespace {

// Rows per sample of a sharded unit's tp all-reduces: `output` rows twice in the forward (after
// the attention and the FFN outputs) and twice in the backward (their input gradients); a
// resampling unit's attention also all-reduces its keys/values' gradient, of `input` rows (the
// other resolution's), in the backward.
struct TpAllReduceRows {
  int64_t output = 0, input = 0;
};
TpAllReduceRows tp_allreduce_rows(const ModelConfig& m, const UnitPlan& p) {
  switch (p.kind) {
    case UnitKind::Down:  // queries are the pooled rows, keys/values the level's full rows
      return {p.rows / level_factor(m, p.stack), p.rows};
    case UnitKind::Up:  // queries are the upsampled rows, keys/values the shortened stack's
      return {p.rows * level_factor(m, p.stack), p.rows};
    default:
      return {p.rows, 0};
  }
}

}  // namespace

// ---- communication costs ----

double ring_allreduce_seconds(double bytes, int n, double bandwidth, double latency) {
  if (n <= 1) return 0;
  return 2.0 * (n - 1) / n * bytes / bandwidth + 2.0 * (n - 1) * latency;
}

double allreduce_seconds(double bytes, int n, double bandwidth, double latency, double calls,
                         double call_latency) {
  if (n <= 1) return 0;
  const double per_call =
      call_latency >= 0 ? call_latency : 2.0 * std::ceil(std::log2(double(n))) * latency;
  return ring_allreduce_seconds(bytes, n, bandwidth, 0) + calls * per_call;
}

GradientSync overlapped_gradient_sync(const std::vector<double>& backward,
                                      const std::vector<double>& bytes, double bucket_bytes,
                                      const AllReduceCost& cost) {
  require(backward.size() == bytes.size() && bucket_bytes > 0,
          "overlapped_gradient_sync: one backward time and byte count per unit, bucket > 0");
  GradientSync out;
  double now = 0;      // since the final backward began, including what the buckets add to it
  double channel = 0;  // when the previous bucket's all-reduce ends
  double open = 0;     // bytes in the bucket being filled
  auto launch = [&](double size, bool in_backward) {
    const double copies = 2 * cost.copy_seconds_per_byte * size;  // into the bucket and back
    const double work = cost.seconds_per_byte * size;
    out.seconds += cost.latency + work + copies;
    ++out.calls;
    if (in_backward) {
      const double on_rank = copies + (cost.on_host ? work : 0);
      now += on_rank;
      out.during_backward += on_rank;
      channel = std::max(now, channel) + cost.latency + (cost.on_host ? 0 : work);
    } else {
      channel = std::max(now, channel) + cost.latency + work + copies;
    }
  };
  const size_t n = backward.size();
  for (size_t i = 0; i < n; ++i) {
    now += backward[i];
    // A unit larger than a bucket fills several, all ready when it is done (the trainer never
    // splits a tensor, so its buckets may be larger by a tensor: at most one call fewer).
    for (open += bytes[i]; open >= bucket_bytes; open -= bucket_bytes)
      launch(bucket_bytes, i + 1 < n);
  }
  if (open > 1e-9 * bucket_bytes) launch(open, false);  // not a rounding remainder
  out.exposed = std::max(0.0, channel - now);
  return out;
}

// ---- layouts ----

PlanInputs::PlanInputs(const Config& c, const ClusterSpec& cl, const PlanOptions& o)
    : config(c), cluster(cl), options(o) {
  seq_len = config.train.seq_len;
  batch = config.train.batch;
  plans = plan_units(config.model, seq_len);
  infos = unit_infos(plans);
  units = static_cast<int>(plans.size());
  bf16 = options.precision == "bf16";
  value_bytes = bf16 ? 2 : 4;
  grad_bytes = bf16 ? 2 : 4;
  optimizer_bytes = bf16 ? 40 : 36;
  intra_latency = cluster.intra_latency < 0 ? cluster.latency : cluster.intra_latency;
  recompute = recompute_blocks(config.train);
  // The trainer's bucket (parallel.grad_bucket_mb, MiB), unless plan.bucket_mb (MiB) overrides.
  bucket_bytes = options.bucket_mb > 0 ? options.bucket_mb * 1024 * 1024
                                       : double(grad_bucket_bytes(config.parallel));
  if (config.train.matformer == Matformer::Joint) {
    granularity_runs = config.model.submodels();
    average_over_submodels(plans, config.model);
  }
  if (!options.calibration.empty()) read_calibration_index();
  world = options.ranks > 0 ? options.ranks : cluster.devices();
  for (const UnitPlan& p : plans) {
    model_flops_per_step += p.flops * batch * granularity_runs;
    params += p.params;
  }
  busy_per_node = std::min(world, cluster.devices_per_node);
}

// A calibration measured for another model or seq_len would price the wrong units: refuse it.
void PlanInputs::read_calibration_index() {
  const Calibration c = read_calibration(options.calibration);
  require(c.model_key == calibration_model_key(config),
          "calibration file " + options.calibration +
              " was measured for another model or seq_len:\n  file:   " + c.model_key +
              "\n  config: " + calibration_model_key(config) +
              "\nRerun hourglass plan --calibrate with this configuration.");
  calibration = std::make_unique<CalibrationIndex>();
  for (const UnitTiming& t : c.units) calibration->by_unit[t.name].push_back(t);
}

double GridCosts::link_seconds(double bytes, bool intra) const {  // one pipeline message
  return cluster_.message_overhead + (intra ? in_.intra_latency + bytes / cluster_.intra_bandwidth
                                            : cluster_.latency + bytes / cluster_.inter_bandwidth);
}

// `back_to_back`: the gradient all-reduce's calls follow each other, so after the first the ranks
// arrive together (cluster.allreduce_latency when measured); a tp all-reduce follows compute, which
// never ends at once on every rank, so it pays the link latency.
double GridCosts::allreduce(double bytes, int n, bool intra, double calls,
                            bool back_to_back) const {
  const double link = intra ? cluster_.intra_bandwidth : cluster_.inter_bandwidth;
  return allreduce_seconds(bytes, n,
                           cluster_.allreduce_bandwidth > 0 ? cluster_.allreduce_bandwidth : link,
                           intra ? in_.intra_latency : cluster_.latency, calls,
                           back_to_back ? cluster_.allreduce_latency : -1);
}

// pp · v (virtual) stages: parallel.stages applies to the config's own pp and virtual_stages only
// (it counts units per virtual stage).
const std::vector<int>& GridCosts::partition(int v) {
  const ParallelConfig& parallel = in_.config.parallel;
  auto [it, added] = partitions_.try_emplace({pp_, v});
  if (added)
    it->second =
        partition_units(in_.infos, pp_ * v, static_cast<int>(in_.config.model.stacks.size()),
                        pp_ == parallel.pp && v == parallel.virtual_stages ? parallel.stages : "");
  return it->second;
}

// One unit's share of a stage at micro-batch size mb: its compute (calibrated or from FLOPs), its
// tp all-reduces, its parameters and activations.
void GridCosts::add_unit(StageCosts& c, const UnitPlan& p, int mb) const {
  const ModelConfig& model = in_.config.model;
  const bool sharded = tp_sharded(model, p);
  const double split = sharded ? tp_ : 1;
  double compute_split = split;  // 1 when the calibration timed this tp's shard
  double f = 0, b = 0, upd = 0;
  double w = 0, b_input = 0;  // zbh1's W and B
  if (in_.calibration) {
    const auto [t, shard_timed] = in_.calibration->nearest(p.name, mb, in_.busy_per_node, tp_);
    const double scale = double(mb) / t->micro_batch;
    f = t->forward * scale;
    b = t->backward * scale;
    upd = t->update;
    if (shard_timed) compute_split = 1;
    if (t->weight >= 0) {
      w = t->weight * scale;
      b_input = t->input * scale;
    } else {  // a file from before B and W were timed: split by the products' FLOP share
      w = p.flops > 0 ? b * p.weight_flops / (p.flops * 2 / 3) : 0;
      b_input = b - w;
    }
  } else {
    const double per_flop = double(mb) / (cluster_.device_flops * cluster_.efficiency);
    const double seconds = p.flops * per_flop;
    f = seconds / 3;
    b = seconds * 2 / 3;
    w = p.weight_flops * per_flop;
    b_input = b - w;
    if (cluster_.memory_bandwidth > 0)
      upd = p.params * in_.optimizer_bytes / cluster_.memory_bandwidth;
  }
  f = f / compute_split + cluster_.unit_overhead;
  b = b / compute_split + cluster_.unit_overhead;
  b_input = b_input / compute_split + cluster_.unit_overhead;
  // W is a pass over the unit's products only: a unit without any has no W pass to pay for.
  w = w / compute_split + (p.weight_flops > 0 ? cluster_.unit_overhead : 0);
  double ar_forward = 0;  // the unit's tp all-reduces in its forward
  if (sharded && tp_ > 1) {
    const TpAllReduceRows rows = tp_allreduce_rows(model, p);
    const bool tp_intra = cluster_.devices_per_node % tp_ == 0;
    auto cost = [&](int64_t r) {
      return allreduce(double(mb) * r * model.d_model * in_.value_bytes, tp_, tp_intra, 1, false);
    };
    ar_forward = 2 * cost(rows.output);  // after the attention output and the FFN output
    const double ar_backward = 2 * cost(rows.output) + (rows.input ? cost(rows.input) : 0);
    f += ar_forward;
    b += ar_backward;
    b_input += ar_backward;
    c.tp_time += ar_forward + ar_backward;
  }
  const bool recomputed = in_.recompute && p.kind == UnitKind::Block;
  if (recomputed) {
    b += f;  // the forward again, all-reduces included
    b_input += f;
    c.tp_time += ar_forward;
  }
  c.forward += f;
  c.backward += b;
  c.input += b_input;
  c.weight += w;
  c.unit_weight.insert(c.unit_weight.begin(), w);
  c.update += upd / compute_split;
  add_unit_memory(c.memory, model, p, mb, tp_, in_.recompute, in_.value_bytes);
  c.unit_backward.insert(c.unit_backward.begin(), b);
  c.unit_grad_bytes.insert(c.unit_grad_bytes.begin(), p.params / split * in_.grad_bytes);
}

// Units [u0, u1) as one stage (or virtual stage) at micro-batch size mb.
StageCosts GridCosts::range_costs(int u0, int u1, int mb) const {
  StageCosts c;
  for (int u = u0; u < u1; ++u) add_unit(c, in_.plans[u], mb);
  return c;
}

// Per rank: the replicas' gradient sum, overlapped with the final backward (the same op under
// gpipe, 1f1b and interleaved, micro-batch m - 1 of chunk 0; under zbh1 the final W, which starts
// the buckets unit by unit as the final backward does otherwise).
// Interleaved, each chunk's final backward starts the buckets of its units, chunk v - 1 first
// (pipeline_runtime.cpp); conservatively, the buckets of chunks v - 1 .. 1 are taken as ready only
// when chunk 0's final backward begins (they are ready earlier, between other ops), so only chunk
// 0's backward hides the all-reduce.
std::vector<GradientSync> GridCosts::gradient_syncs(ScheduleKind kind,
                                                    const std::vector<StageCosts>& stage,
                                                    int v) const {
  std::vector<GradientSync> sync(pp_);
  for (int s = 0; s < pp_ && dp_ > 1; ++s) {
    const bool intra = node(0, s) == node(dp_ - 1, s);
    AllReduceCost cost;
    cost.latency = allreduce(0, dp_, intra, 1, true);
    cost.seconds_per_byte = allreduce(1, dp_, intra, 0, true);
    if (cluster_.memory_bandwidth > 0) cost.copy_seconds_per_byte = 2 / cluster_.memory_bandwidth;
    cost.on_host = cluster_.host_collectives != 0;
    std::vector<double> backward, bytes;  // the rank's units, backward order
    for (int c = v - 1; c >= 0; --c) {
      const StageCosts& chunk = stage[c * pp_ + s];
      const std::vector<double>& final_pass =
          kind == ScheduleKind::ZeroBubbleH1 ? chunk.unit_weight : chunk.unit_backward;
      for (size_t i = 0; i < final_pass.size(); ++i) {
        backward.push_back(c == 0 ? final_pass[i] : 0.0);
        bytes.push_back(chunk.unit_grad_bytes[i]);
      }
    }
    sync[s] = overlapped_gradient_sync(backward, bytes, in_.bucket_bytes, cost);
  }
  return sync;
}

// What the simulator charges: each op's compute and each message's link. The returned costs read
// `stage` and `sync`, which must outlive them.
SimulationCosts GridCosts::simulation_costs(ScheduleKind kind, const std::vector<StageCosts>& stage,
                                            const std::vector<GradientSync>& sync,
                                            const std::vector<int>& first,
                                            const std::vector<SkipEdge>& skips, int mb,
                                            int m) const {
  const ModelConfig& model = in_.config.model;
  const int V = static_cast<int>(stage.size());
  SimulationCosts costs;
  // zbh1's lists split each backward into B (Backward) and W (BackwardWeight). The final backward
  // (zbh1: the final W) also carries what the gradient buckets add to it.
  const bool split = kind == ScheduleKind::ZeroBubbleH1;
  costs.compute = [&stage, &sync, pp = pp_, m, split](int s, const Instruction& in) {
    const StageCosts& c = stage[in.chunk * pp + s];
    if (in.op == Op::Forward) return c.forward;
    const bool weight = in.op == Op::BackwardWeight;
    const bool starts_buckets = in.chunk == 0 && in.micro_batch == m - 1 && (weight || !split);
    const double own = weight ? c.weight : split ? c.input : c.backward;
    return own + (starts_buckets ? sync[s].during_backward : 0.0);
  };
  // Virtual stage k runs on rank k mod pp: boundary k is a message between those ranks.
  for (int k = 0; k + 1 < V; ++k) {
    const double bytes =
        double(mb) * in_.plans[first[k + 1]].rows * model.d_model * in_.value_bytes;
    costs.activation_message.push_back(link_seconds(bytes, same_node(k % pp_, (k + 1) % pp_)));
  }
  for (const SkipEdge& e : skips) {
    if (e.producer_stage % pp_ == e.consumer_stage % pp_) continue;  // one rank: no message
    int64_t rows = 0;
    for (const UnitPlan& p : in_.plans)
      if (p.kind == UnitKind::Down && p.stack == e.level) rows = p.rows;
    if (static_cast<int>(costs.skip_message.size()) <= e.level)
      costs.skip_message.resize(e.level + 1);
    costs.skip_message[e.level] =
        link_seconds(double(mb) * rows * model.d_model * in_.value_bytes,
                     same_node(e.producer_stage % pp_, e.consumer_stage % pp_));
  }
  return costs;
}

// The slowest rank's gradient sync, optimizer, tp time and memory into lp; returns when the last
// rank's pipeline and exposed gradient sync end.
double GridCosts::add_rank_totals(LayoutPlan& lp, const std::vector<StageCosts>& stage,
                                  const std::vector<GradientSync>& sync,
                                  const SimulationResult& sim, int v, int m) const {
  double end = 0;
  for (int s = 0; s < pp_; ++s) {
    // The rank's chunks; sim.max_alive counts its (micro-batch, chunk) pairs.
    double update = 0, tp_time = 0;
    std::vector<ChunkMemory> chunks;
    for (int c = 0; c < v; ++c) {
      const StageCosts& chunk = stage[c * pp_ + s];
      chunks.push_back(chunk.memory);
      update += chunk.update;
      tp_time += chunk.tp_time;
    }
    lp.dp_seconds = std::max(lp.dp_seconds, sync[s].exposed);
    lp.dp_total_seconds = std::max(lp.dp_total_seconds, sync[s].seconds);
    // ZeRO-1: each replica updates its 1/dp shard of the moments (the all-gather that follows is
    // costed as the other half of the gradient all-reduce it replaces).
    const bool zero = in_.config.parallel.zero == 1 && dp_ > 1;
    lp.optimizer_seconds = std::max(lp.optimizer_seconds, zero ? update / dp_ : update);
    end = std::max(end, sim.finish[s] + sync[s].exposed);
    lp.tp_seconds = std::max(lp.tp_seconds, tp_time * m);
    const RankMemory held = rank_memory(
        chunks, sim.max_alive[s], parameter_state_bytes(in_.bf16, in_.config.parallel.zero, dp_));
    const double memory = held.total() + cluster_.memory_reserve;
    if (memory > lp.memory_bytes) {
      lp.memory_bytes = memory;
      lp.param_bytes = held.param_bytes;
      lp.activation_bytes = held.activations();
    }
  }
  return end;
}

// One layout: the schedule `kind` with v chunks per rank (1 unless interleaved) on pp · v virtual
// stages; rank s holds virtual stages c·pp + s as its chunks c (rank_chunks).
LayoutPlan GridCosts::evaluate(ScheduleKind kind, int v, int mb, int m) {
  const int V = pp_ * v;
  const std::vector<int>& first = partition(v);
  const std::vector<SkipEdge> skips = skip_edges(in_.infos, first);
  std::vector<StageCosts> stage(V);
  for (int k = 0; k < V; ++k) stage[k] = range_costs(first[k], first[k + 1], mb);
  const std::vector<GradientSync> sync = gradient_syncs(kind, stage, v);
  const SimulationCosts costs = simulation_costs(kind, stage, sync, first, skips, mb, m);

  LayoutPlan lp;
  lp.dp = dp_;
  lp.pp = pp_;
  lp.tp = tp_;
  lp.micro_batch = mb;
  lp.micro_batches = m;
  lp.schedule = kind;
  lp.virtual_stages = v;
  const auto lists = make_schedule(kind, PipelineLayout{pp_, m, skips, v});
  const SimulationResult sim = simulate(lists, costs);
  if (!sim.ok) throw std::logic_error("plan: simulation failed: " + sim.error);
  lp.pipeline_seconds = sim.makespan;
  lp.bubble = sim.bubble;
  lp.theory_bubble = theoretical_bubble(kind, pp_, m, v);
  const double end = add_rank_totals(lp, stage, sync, sim, v, m);
  // The loss and grad-norm all-reduces: two latency-bound calls over the world.
  const int W = in_.world;
  const double collectives = allreduce_seconds(
      0, W, 1, std::max(cluster_.latency, in_.intra_latency), 2, cluster_.allreduce_latency);
  lp.step_seconds = end + lp.optimizer_seconds + collectives;
  lp.tokens_per_second = double(in_.batch) * in_.seq_len / lp.step_seconds;
  lp.mfu = in_.model_flops_per_step / (lp.step_seconds * W * cluster_.device_flops);
  if (lp.memory_bytes > cluster_.device_memory) {
    lp.fits = false;
    lp.note = "needs " + si(lp.memory_bytes, "B") + " > " + si(cluster_.device_memory, "B");
  }
  return lp;
}

}  // namespace hg
