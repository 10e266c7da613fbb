// Pipeline-parallel throughput (issues 4, 16): pp = the number of ranks (2 .. 8; 1 rank: pp 1
// only), one thread each, against one rank of one thread, same model, same global batch of m
// micro-batches, same code path
// (distributed_step over a PipelineRuntime; pp = 1 is a schedule without messages).
//
//   OMP_NUM_THREADS=1 mpirun -np 2|3 --bind-to core bench_pipeline [options]
//     --hierarchy "2@1 4@3 2@1"  --d-model 256  --heads 4  --ffn 1024  --seq-len 768
//     --window 128  --chunk 16  --micro-batches 8  --micro-batch 1
//     --schedule 1f1b|gpipe|interleaved|zbh1  --virtual-stages V (interleaved: chunks per rank)
//     --stages A,B (parallel.stages, per virtual stage; default: the cost model's balance)
//     --steps 5  --warmup 1
//     --trace FILE (Chrome trace of the last pipelined step)
//
// The two layouts run in alternating rounds (one pp = 1 step on rank 0 while the others sleep in a
// barrier, then one pipelined step on all), so a machine shared with other work disturbs both alike;
// the speed-up is the median of the per-round ratios. Under -np 1 only pp = 1 runs.
//
// Printed: tokens/s of both (median and best step), the speed-up, the measured bubble next to the
// schedule's (p−1)/(v·m+p−1), each stage's compute / communication-wait / other time per step, and
// an uncontended estimate: the schedule simulated (parallel/schedule.h) with each stage's measured
// CPU time per forward and backward, plus the CPU time outside the schedule (grad-norm, AdamW).
// With one thread per rank, CPU time is what an idle core would have taken, so the estimate is
// what this machine gives when nothing else runs on it.
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/common.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/parallel_for.h"
#include "model/stage_model.h"
#include "model/units.h"
#include "parallel/comm.h"
#include "parallel/communicator.h"
#include "parallel/grid.h"
#include "parallel/partition.h"
#include "core/enum_names.h"
#include "parallel/schedule.h"
#include "parallel/trace.h"
#include "trainer/config.h"
#include "trainer/distributed_step.h"
#include "trainer/pipeline_runtime.h"

namespace {

using hg::bench::cpu_seconds;
using hg::bench::median;

struct Options : hg::bench::ModelFlags {
  int micro_batches = 8, micro_batch = 1;
  hg::ScheduleKind schedule = hg::ScheduleKind::OneFOneB;
  int virtual_stages = 1;
  std::string stages;
  int steps = 5, warmup = 1;
  std::string trace;
};

Options parse(int argc, char** argv) {
  Options o;
  hg::bench::Flags flags(
      argc, argv,
      "bench_pipeline [--hierarchy H] [--d-model N] [--heads N] [--ffn N] "
      "[--seq-len N] [--window N] [--chunk N] [--micro-batches N] "
      "[--micro-batch N] [--schedule 1f1b|gpipe|interleaved|zbh1] [--virtual-stages V] "
      "[--stages A,B] [--steps N] "
      "[--warmup N] [--trace FILE]");
  o.read(flags);
  o.micro_batches = flags.integer("--micro-batches", o.micro_batches);
  o.micro_batch = flags.integer("--micro-batch", o.micro_batch);
  const std::string schedule = flags.text("--schedule", "1f1b");
  hg::require(hg::parse_enum(schedule, o.schedule),
              "--schedule " + schedule + ": use " + hg::enum_choices<hg::ScheduleKind>());
  o.virtual_stages = flags.integer("--virtual-stages", o.virtual_stages);
  o.stages = flags.text("--stages", o.stages);
  o.steps = flags.integer("--steps", o.steps);
  o.warmup = flags.integer("--warmup", o.warmup);
  o.trace = flags.text("--trace", o.trace);
  flags.done();
  hg::require(o.steps >= 1 && o.warmup >= 0, "--steps >= 1, --warmup >= 0");
  hg::require(o.virtual_stages == 1 || o.schedule == hg::ScheduleKind::Interleaved,
              "--virtual-stages > 1 needs --schedule interleaved");
  return o;
}

hg::Config make_config(const Options& o, int pp) {
  hg::Config config = hg::config_from_ini(o.ini(o.micro_batches * o.micro_batch, o.micro_batch));
  config.parallel.pp = pp;
  config.parallel.schedule = pp > 1 ? o.schedule : hg::ScheduleKind::OneFOneB;
  config.parallel.virtual_stages = pp > 1 ? o.virtual_stages : 1;
  config.parallel.stages = pp > 1 ? o.stages : "";
  return config;
}

// One layout on `comm`: its grid, this rank's stage and the runtime.
struct Layout {
  hg::Config config;
  MPI_Comm comm = MPI_COMM_NULL;
  std::vector<int> first;           // [pp·v + 1] virtual stage boundaries
  std::vector<double> chunk_share;  // per virtual stage k: its share of rank k mod pp's flops
  std::unique_ptr<hg::ProcessGrid> grid;
  hg::GridCommunicators comms;  // the grid's groups, made right after it
  std::unique_ptr<hg::StageModel> model;
  std::unique_ptr<hg::TraceRecorder> trace;
  std::unique_ptr<hg::PipelineRuntime> runtime;
  std::vector<int32_t> tokens;  // [batch, seq_len + 1], random: throughput does not depend on it
};

// Collective over `comm`.
std::unique_ptr<Layout> make_layout(const hg::Config& config, MPI_Comm comm, bool trace) {
  auto l = std::make_unique<Layout>();
  l->config = config;
  l->comm = comm;
  l->grid = std::make_unique<hg::ProcessGrid>(1, config.parallel.pp, 1, comm);
  l->comms = hg::make_mpi_communicators(*l->grid);
  const auto infos = hg::unit_infos(hg::plan_units(config.model, config.train.seq_len));
  const int pp = config.parallel.pp, v = config.parallel.virtual_stages;
  l->first = hg::partition_units(infos, pp * v, static_cast<int>(config.model.stacks.size()),
                                 config.parallel.stages);
  if (l->grid->rank() == 0 && pp > 1)
    std::printf("%s\n", hg::format_partition(infos, l->first).c_str());
  const int stage = l->grid->stage();
  l->model = std::make_unique<hg::StageModel>(config.model, config.train.seq_len,
                                              hg::rank_chunks(l->first, pp, stage));
  // The simulation splits a rank's measured time per micro-batch over its chunks by this share.
  std::vector<double> flops(pp * v, 0.0), rank_flops(pp, 0.0);
  for (int k = 0; k < pp * v; ++k)
    for (int u = l->first[k]; u < l->first[k + 1]; ++u) flops[k] += infos[u].flops;
  for (int k = 0; k < pp * v; ++k) rank_flops[k % pp] += flops[k];
  for (int k = 0; k < pp * v; ++k) l->chunk_share.push_back(flops[k] / rank_flops[k % pp]);
  l->model->params().init_all(config.train.seed);
  l->trace = std::make_unique<hg::TraceRecorder>(comm, trace);
  l->trace->set_label("rank " + std::to_string(l->grid->rank()) + " (stage " +
                      std::to_string(stage) + ")");
  l->runtime = std::make_unique<hg::PipelineRuntime>(
      *l->model, *l->grid, l->comms, config.parallel.schedule, l->first,
      trace ? l->trace.get() : nullptr);
  l->tokens = hg::bench::random_tokens(
      static_cast<int64_t>(config.train.batch) * (config.train.seq_len + 1), 256, 7, 0);
  return l;
}

// One step's figures; per-stage vectors are filled on every rank of the layout.
struct Sample {
  double wall = 0;    // slowest rank, whole update
  double bubble = 0;  // distributed_step's measured bubble
  std::vector<double> step, compute, wait, forward_cpu, backward_cpu, weight_cpu, cpu;  // [stage]
};

Sample run_step(Layout& l, int64_t s) {
  const int pp = l.grid->pp(), stage = l.grid->stage();
  const int64_t row = l.config.train.seq_len + 1;
  std::vector<hg::TokenBatch> micro = hg::replica_micro_batches(l.config, 0, {});
  for (hg::TokenBatch& mb : micro) mb.tokens = l.tokens.data() + mb.first_sample * row;
  l.trace->clear();
  hg::comm::barrier(l.comm);
  const double t0 = MPI_Wtime(), cpu0 = cpu_seconds();
  const hg::DistributedStep out =
      hg::distributed_step(*l.model, *l.runtime, *l.grid, l.config, s, micro);
  Sample r;
  const double cpu = cpu_seconds() - cpu0;
  r.wall = MPI_Wtime() - t0;
  MPI_Allreduce(MPI_IN_PLACE, &r.wall, 1, MPI_DOUBLE, MPI_MAX, l.comm);
  r.bubble = out.bubble;
  const hg::PipelineStats& st = l.runtime->stats();
  constexpr int kFields = 7;
  const double mine[kFields] = {st.step_seconds,
                                st.compute_seconds,
                                st.wait_seconds,
                                st.forward_cpu_seconds,
                                st.backward_cpu_seconds,
                                st.weight_cpu_seconds,
                                cpu};
  std::vector<double> all(kFields * pp, 0.0);
  for (int k = 0; k < kFields; ++k) all[k * pp + stage] = mine[k];
  hg::comm::allreduce_sum(all.data(), static_cast<int64_t>(all.size()), l.comm);
  std::vector<double>* fields[kFields] = {&r.step,         &r.compute,    &r.wait, &r.forward_cpu,
                                          &r.backward_cpu, &r.weight_cpu, &r.cpu};
  for (int k = 0; k < kFields; ++k)
    fields[k]->assign(all.begin() + k * pp, all.begin() + (k + 1) * pp);
  return r;
}

// Mean over samples of field `f` of stage `p`.
template <class F>
double mean_of(const std::vector<Sample>& samples, F f) {
  double sum = 0;
  for (const Sample& s : samples) sum += f(s);
  return sum / static_cast<double>(samples.size());
}

struct Estimate {
  double seconds = 0;  // uncontended step time
  double bubble = 0;   // of the simulated schedule
};

// The schedule simulated with the measured per-op CPU times, plus the slowest stage's CPU time
// outside forward/backward (grad-norm, optimizer, runtime bookkeeping).
Estimate uncontended(const Layout& l, const std::vector<Sample>& samples) {
  const int pp = l.grid->pp(), m = l.config.train.batch / l.config.train.micro_batch;
  const int v = l.config.parallel.virtual_stages;
  hg::SimulationCosts costs;
  double outside = 0;
  for (int p = 0; p < pp; ++p) {
    const double f = mean_of(samples, [&](const Sample& s) { return s.forward_cpu[p]; });
    const double b = mean_of(samples, [&](const Sample& s) { return s.backward_cpu[p]; });
    const double w = mean_of(samples, [&](const Sample& s) { return s.weight_cpu[p]; });
    const double cpu = mean_of(samples, [&](const Sample& s) { return s.cpu[p]; });
    costs.forward.push_back(f / m);
    costs.backward.push_back(b / m);
    costs.weight.push_back(w / m);
    outside = std::max(outside, cpu - f - b - w);
  }
  costs.compute = [&](int stage, const hg::Instruction& in) {
    const double share = l.chunk_share[in.chunk * pp + stage];
    const std::vector<double>& per_op = in.op == hg::Op::Forward          ? costs.forward
                                        : in.op == hg::Op::BackwardWeight ? costs.weight
                                                                          : costs.backward;
    return share * per_op[stage];
  };
  const hg::PipelineLayout layout{pp, m, l.runtime->skips(), v};
  const hg::SimulationResult sim = hg::simulate(
      hg::make_schedule(l.config.parallel.schedule, layout), costs);
  if (!sim.ok) throw std::logic_error("schedule simulation failed: " + sim.error);
  return {sim.makespan + outside, sim.bubble};
}

}  // namespace

int main(int argc, char** argv) {
  return hg::bench::run_mpi_main(argc, argv, "bench_pipeline", [&](int rank, int size) {
    const Options o = parse(argc, argv);
    hg::require(size <= 8, "run with mpirun -np 1 .. 8 (pp = the number of ranks)");
    hg::set_num_threads(1);
    const int m = o.micro_batches, p = std::max(size, 2);
    hg::require(o.schedule != hg::ScheduleKind::Interleaved || m % p == 0,
                "--schedule interleaved needs --micro-batches a multiple of pp = " +
                    std::to_string(p));
    const hg::Config one_config = make_config(o, 1);
    const double tokens = static_cast<double>(one_config.train.batch) * one_config.train.seq_len;
    if (rank == 0)
      std::printf(
          "bench_pipeline: %s; %d micro-batches of %d (%.0f tokens/step), %s, 1 thread per rank, "
          "matrix products by %s; %d rounds after %d warm-up; load average %s",
          o.describe().c_str(), m, o.micro_batch, tokens, hg::schedule_name(o.schedule), hg::gemm_library(),
          o.steps, o.warmup, [] {
            static char buf[64] = "?\n";
            if (FILE* f = std::fopen("/proc/loadavg", "r")) {
              if (!std::fgets(buf, sizeof buf, f)) buf[0] = '\0';
              std::fclose(f);
            }
            return buf;
          }());
    MPI_Comm solo = MPI_COMM_NULL;
    MPI_Comm_split(MPI_COMM_WORLD, rank == 0 ? 0 : MPI_UNDEFINED, rank, &solo);
    std::unique_ptr<Layout> one, two;
    if (solo != MPI_COMM_NULL) one = make_layout(one_config, solo, false);
    if (size >= 2) two = make_layout(make_config(o, p), MPI_COMM_WORLD, !o.trace.empty());

    std::vector<Sample> ones, twos;
    for (int s = 0; s < o.warmup + o.steps; ++s) {
      if (one) {
        Sample r = run_step(*one, s);
        if (s >= o.warmup) ones.push_back(r);
      }
      hg::comm::barrier(MPI_COMM_WORLD);  // the other ranks sleep here meanwhile
      if (two) {
        Sample r = run_step(*two, s);
        if (s >= o.warmup) twos.push_back(r);
      }
    }
    if (two && !o.trace.empty()) two->trace->write(o.trace);

    if (rank == 0) {
      auto walls = [](const std::vector<Sample>& v) {
        std::vector<double> w;
        for (const Sample& s : v) w.push_back(s.wall);
        return w;
      };
      const std::vector<double> w1 = walls(ones);
      const double med1 = median(w1), best1 = *std::min_element(w1.begin(), w1.end());
      const double cpu1 = mean_of(ones, [](const Sample& s) { return s.cpu[0]; });
      std::printf(
          "pp 1 (1 rank):  median %.3f s/step = %6.0f tokens/s; best %.3f s = %6.0f "
          "tokens/s; CPU %.3f s/step\n",
          med1, tokens / med1, best1, tokens / best1, cpu1);
      if (two) {
        const std::vector<double> w2 = walls(twos);
        const double med2 = median(w2), best2 = *std::min_element(w2.begin(), w2.end());
        std::printf(
            "pp %d (%d ranks): median %.3f s/step = %6.0f tokens/s; best %.3f s = %6.0f "
            "tokens/s\n",
            p, p, med2, tokens / med2, best2, tokens / best2);
        for (int st = 0; st < p; ++st) {
          auto avg = [&](auto f) { return mean_of(twos, f); };
          const double step = avg([&](const Sample& s) { return s.step[st]; });
          const double compute = avg([&](const Sample& s) { return s.compute[st]; });
          const double wait = avg([&](const Sample& s) { return s.wait[st]; });
          const double cpu = avg([&](const Sample& s) {
            return s.forward_cpu[st] + s.backward_cpu[st] + s.weight_cpu[st];
          });
          std::printf(
              "  stage %d: schedule %.3f s/step = compute %.3f (CPU %.3f) + comm wait "
              "%.4f + other %.4f\n",
              st, step, compute, cpu, wait, step - compute - wait);
        }
        std::vector<double> ratios;
        for (size_t r = 0; r < ones.size(); ++r) ratios.push_back(ones[r].wall / twos[r].wall);
        const double bubble = mean_of(twos, [](const Sample& s) { return s.bubble; });
        std::printf("bubble: measured %.3f, theory %s = %.3f (v = %d)\n", bubble,
                    o.schedule == hg::ScheduleKind::ZeroBubbleH1
                        ? "(p-1)/(3m+p-1) at T_F = T_B = T_W"
                        : "(p-1)/(v*m+p-1)",
                    hg::theoretical_bubble(o.schedule, p, m, o.virtual_stages), o.virtual_stages);
        std::printf("comm wait per step:");
        for (int st = 0; st < p; ++st)
          std::printf(" stage %d %.4f s", st,
                      mean_of(twos, [st](const Sample& s) { return s.wait[st]; }));
        std::printf("\n");
        std::printf(
            "speed-up pp %d / pp 1: %.3fx (median of per-round ratios; best steps %.3fx); "
            "ideal p*v*m/(v*m+p-1) = %.3fx\n",
            p, median(ratios), best1 / best2,
            double(p) * o.virtual_stages * m / (o.virtual_stages * m + p - 1));
        const Estimate est = uncontended(*two, twos);
        std::printf(
            "uncontended estimate (measured CPU time per op, schedule simulated): pp 1 "
            "%.3f s/step, pp %d %.3f s/step, speed-up %.3fx, bubble %.3f\n",
            cpu1, p, est.seconds, cpu1 / est.seconds, est.bubble);
        if (!o.trace.empty()) std::printf("trace of the last pp %d step: %s\n", p, o.trace.c_str());
      }
    }
    two.reset();
    one.reset();
    if (solo != MPI_COMM_NULL) MPI_Comm_free(&solo);
  });
}
