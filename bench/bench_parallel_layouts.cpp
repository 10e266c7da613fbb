// Tensor and data parallelism on two ranks (issue 5): tp = 2 and dp = 2, each on two ranks of one
// thread, against one rank of one thread; same model, same global batch, same code path
// (distributed_step over a PipelineRuntime with pp = 1).
//
//   OMP_NUM_THREADS=1 mpirun -np 2 --bind-to core bench_parallel_layouts [options]
//     --hierarchy "2@1 4@3 2@1"  --d-model 256  --heads 4  --ffn 1024  --seq-len 768
//     --window 128  --chunk 16  --batch 8  --micro-batch 2  --steps 3  --warmup 1
//     --bucket-mb 4   (parallel.grad_bucket_mb)
//
// The baseline runs on rank 0 alone while rank 1 sleeps in a barrier (the comm layer's waits back
// off to sleeps). Communication per step:
//   tp = 2: time inside the attention/FFN all-reduces (tp_allreduce_seconds(), measured in the
//           step: transfer plus waiting for the partner rank);
//   dp = 2: the bucketed gradient all-reduce over dp_comm (parallel/grad_buckets.h): copying into
//           buckets, starting and testing them during the final backward, and waiting for what
//           is left after it (the "exposed" part, printed on its own). Exposed time includes
//           waiting for the slower replica: the difference of the two ranks' schedule times
//           ("imbalance") is printed beside it, since on a shared machine it is often most of it.
// Besides wall time, each step's process CPU time (max over the ranks) is printed: on a machine
// shared with other work, a rank descheduled mid-step stretches every rank's wall time (tensor
// parallelism synchronises four times per block), while CPU time only counts work done, so the
// CPU-time speed-up is what the layout gives when each rank has its core.
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/common.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/parallel_for.h"
#include "model/stage_model.h"
#include "model/tensor_parallel.h"
#include "model/units.h"
#include "parallel/comm.h"
#include "parallel/communicator.h"
#include "parallel/grid.h"
#include "trainer/config.h"
#include "trainer/distributed_step.h"
#include "trainer/pipeline_runtime.h"

namespace {

using hg::bench::cpu_seconds;

struct Options : hg::bench::ModelFlags, hg::bench::StepFlags {
  double bucket_mb = 4;
};

Options parse(int argc, char** argv) {
  hg::bench::Flags flags(argc, argv,
                         "mpirun -np 2 bench_parallel_layouts [--hierarchy H] [--d-model N] "
                         "[--heads N] [--ffn N] [--seq-len N] [--window N] [--chunk N] "
                         "[--batch N] [--micro-batch N] [--steps N] [--warmup N] [--bucket-mb X]");
  Options o;
  o.ModelFlags::read(flags);
  o.StepFlags::read(flags);
  o.bucket_mb = flags.number("--bucket-mb", o.bucket_mb);
  flags.done();
  return o;
}

hg::Config make_config(const Options& o, int dp, int tp) {
  hg::Config config = hg::config_from_ini(o.ini(o.batch, o.micro_batch));
  config.parallel.dp = dp;
  config.parallel.tp = tp;
  config.parallel.grad_bucket_mb = o.bucket_mb;
  return config;
}

struct Result {
  double step = 0;       // mean s/step (slowest rank)
  double best = 0;       // fastest timed step
  double compute = 0;    // mean forward+backward s/step (rank 0; includes the tp all-reduces)
  double comm = 0;       // mean communication s/step (rank 0), see the header
  double cpu = 0;        // mean process CPU s/step (max over ranks)
  double comm_cpu = 0;   // mean CPU s/step inside the tp all-reduces (rank 0)
  double exposed = 0;    // dp: mean s/step of the gradient all-reduce the backward did not hide
  double imbalance = 0;  // mean s/step between the fastest and the slowest rank's schedule
  int buckets = 0, started_early = 0;  // dp: gradient buckets, of which started in the backward
};

Result run(const hg::Config& config, MPI_Comm comm, const Options& o) {
  hg::ProcessGrid grid(config.parallel.dp, 1, config.parallel.tp, comm);
  const hg::GridCommunicators comms = hg::make_mpi_communicators(grid);
  const auto infos = hg::unit_infos(hg::plan_units(config.model, config.train.seq_len));
  const std::vector<int> first = {0, static_cast<int>(infos.size())};
  hg::StageModel model(config.model, config.train.seq_len, 0, -1,
                       hg::make_tensor_parallel(grid, comms, hg::trained_granularities(config)));
  model.params().init_all(config.train.seed);
  hg::PipelineRuntime runtime(model, grid, comms, hg::ScheduleKind::OneFOneB, first, nullptr,
                              hg::grad_bucket_bytes(config.parallel));
  const int64_t row = config.train.seq_len + 1;
  const std::vector<int32_t> tokens = hg::bench::random_tokens(config.train.batch * row, 256, 7, 0);

  Result r;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    std::vector<hg::TokenBatch> micro = hg::replica_micro_batches(config, grid.dp_rank(), {});
    for (hg::TokenBatch& mb : micro) mb.tokens = tokens.data() + mb.first_sample * row;
    hg::comm::barrier(comm);
    const double tp0 = hg::tp_allreduce_seconds(), tpc0 = hg::tp_allreduce_cpu_seconds();
    const double t0 = MPI_Wtime(), c0 = cpu_seconds();
    hg::distributed_step(model, runtime, grid, config, s, micro);
    double elapsed = MPI_Wtime() - t0, cpu = cpu_seconds() - c0;
    const hg::GradientSyncStats& sync = runtime.stats().grad_sync;
    const double comm_seconds = hg::tp_allreduce_seconds() - tp0 + sync.seconds();
    const double comm_cpu = hg::tp_allreduce_cpu_seconds() - tpc0;
    r.buckets = sync.buckets;
    r.started_early = sync.started_during_backward;
    double slowest = runtime.stats().step_seconds, fastest = slowest;
    MPI_Allreduce(MPI_IN_PLACE, &elapsed, 1, MPI_DOUBLE, MPI_MAX, comm);
    MPI_Allreduce(MPI_IN_PLACE, &cpu, 1, MPI_DOUBLE, MPI_MAX, comm);
    MPI_Allreduce(MPI_IN_PLACE, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm);
    MPI_Allreduce(MPI_IN_PLACE, &fastest, 1, MPI_DOUBLE, MPI_MIN, comm);
    if (s < o.warmup) continue;
    r.step += elapsed / o.steps;
    r.best = s == o.warmup ? elapsed : std::min(r.best, elapsed);
    r.compute += runtime.stats().compute_seconds / o.steps;
    r.comm += comm_seconds / o.steps;
    r.cpu += cpu / o.steps;
    r.comm_cpu += comm_cpu / o.steps;
    r.exposed += sync.exposed_seconds / o.steps;
    r.imbalance += (slowest - fastest) / o.steps;
  }
  return r;
}

void print(const char* label, const Result& r, double tokens, const Result* base) {
  std::printf("%-15s wall %.3f s/step (%.0f tokens/s, best %.3f s)", label, r.step, tokens / r.step,
              r.best);
  if (base)
    std::printf("  speed-up %.2fx (best steps %.2fx)", base->step / r.step, base->best / r.best);
  std::printf("\n%-15s cpu  %.3f s/step", "", r.cpu);
  if (base) std::printf("  speed-up %.2fx", base->cpu / r.cpu);
  std::printf(
      "\n%-15s comm %.4f s/step wall = %.1f%% of the step, %.4f s/step cpu = %.1f%% of "
      "the cpu step; forward+backward %.3f s wall\n",
      "", r.comm, 100.0 * r.comm / r.step, r.comm_cpu, 100.0 * r.comm_cpu / r.cpu, r.compute);
  if (r.buckets > 0)
    std::printf(
        "%-15s gradient all-reduce: %d buckets, %d started during the backward; exposed after "
        "it %.4f s/step = %.1f%% of the step, of which replica imbalance %.4f s\n",
        "", r.buckets, r.started_early, r.exposed, 100.0 * r.exposed / r.step, r.imbalance);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  return hg::bench::run_mpi_main(argc, argv, "bench_parallel_layouts", [&](int rank, int size) {
    const Options o = parse(argc, argv);
    hg::require(size == 2, "run with mpirun -np 2");
    hg::set_num_threads(1);
    const hg::Config base = make_config(o, 1, 1);
    const double tokens = static_cast<double>(base.train.batch) * base.train.seq_len;
    if (rank == 0)
      std::printf(
          "bench_parallel_layouts: %s; batch %d in micro-batches of %d (%.0f tokens/step), "
          "1 thread per rank, matrix products by %s; %d timed steps after %d warm-up; "
          "gradient buckets of %g MiB\n",
          o.describe().c_str(), o.batch, o.micro_batch, tokens, hg::gemm_library(), o.steps,
          o.warmup, o.bucket_mb);
    Result one;
    {
      MPI_Comm solo = MPI_COMM_NULL;
      MPI_Comm_split(MPI_COMM_WORLD, rank == 0 ? 0 : MPI_UNDEFINED, rank, &solo);
      if (solo != MPI_COMM_NULL) {
        one = run(base, solo, o);
        MPI_Comm_free(&solo);
        print("1 rank:", one, tokens, nullptr);
      }
      hg::comm::barrier(MPI_COMM_WORLD);  // rank 1 sleeps here meanwhile
    }
    const Result tp = run(make_config(o, 1, 2), MPI_COMM_WORLD, o);
    if (rank == 0) print("tp 2 (2 ranks):", tp, tokens, &one);
    const Result dp = run(make_config(o, 2, 1), MPI_COMM_WORLD, o);
    if (rank == 0) print("dp 2 (2 ranks):", dp, tokens, &one);
  });
}
