// ZeRO-1 (parallel.zero, ARCHITECTURE.md §9.3): what sharding the AdamW moments over the
// data-parallel replicas saves per rank, and what it costs per step. One configuration per run
// (peak RSS is per process), dp = the number of ranks:
//
//   for dp in 2 4; do for z in 0 1; do
//     OMP_NUM_THREADS=1 mpirun -np $dp --bind-to core bench_zero --zero $z [options]; done; done
//     --hierarchy "2@1 4@3 2@1"  --d-model 256  --heads 4  --ffn 1024  --seq-len 768
//     --window 128  --chunk 16  --batch 8  --micro-batch 1  --steps 3  --warmup 1
//
// Per rank (max over ranks): optimizer bytes (both moments as allocated), parameter bytes, peak
// RSS (getrusage ru_maxrss: the whole process, activations and MPI buffers included); per step
// (slowest rank): wall time, and the gradient reduction (all-reduce or reduce-scatter) that the
// backward did not hide. Under zero 1 the step also holds the parameter all-gather after the
// update, timed on its own.
#include <mpi.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/common.h"
#include "core/error.h"
#include "core/parallel_for.h"
#include "model/stage_model.h"
#include "model/units.h"
#include "parallel/communicator.h"
#include "parallel/grid.h"
#include "trainer/config.h"
#include "trainer/distributed_step.h"
#include "trainer/pipeline_runtime.h"

namespace {

struct Options : hg::bench::ModelFlags, hg::bench::StepFlags {
  int zero = 0;
};

Options parse(int argc, char** argv) {
  hg::bench::Flags flags(argc, argv,
                         "mpirun -np DP bench_zero [--zero 0|1] [--hierarchy H] [--d-model N] "
                         "[--heads N] [--ffn N] [--seq-len N] [--window N] [--chunk N] "
                         "[--batch N] [--micro-batch N] [--steps N] [--warmup N]");
  Options o;
  o.micro_batch = 1;  // 8 micro-batches: the final backward that hides the gradient reduction
  o.ModelFlags::read(flags);
  o.StepFlags::read(flags);
  o.zero = flags.integer("--zero", o.zero);
  flags.done();
  return o;
}

double max_over_ranks(double x) {
  MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  return hg::bench::run_mpi_main(argc, argv, "bench_zero", [&](int rank, int size) {
    const Options o = parse(argc, argv);
    hg::require(size >= 2, "run with mpirun -np DP, DP >= 2 (the data-parallel replicas)");
    hg::set_num_threads(1);
    hg::Config config = hg::config_from_ini(o.ini(o.batch, o.micro_batch));
    config.parallel.dp = size;
    config.parallel.zero = o.zero;
    hg::require(o.zero == 0 || o.zero == 1, "--zero must be 0 or 1");
    hg::ProcessGrid grid(size, 1, 1, MPI_COMM_WORLD);
    const hg::GridCommunicators comms = hg::make_mpi_communicators(grid);
    const auto infos = hg::unit_infos(hg::plan_units(config.model, config.train.seq_len));
    const int units = static_cast<int>(infos.size());
    hg::StageModel model(config.model, config.train.seq_len, {{0, units}}, {}, false,
                         hg::cpu_backend(), hg::zero_shard(config, grid));
    model.params().init_all(config.train.seed);
    hg::PipelineRuntime runtime(model, grid, comms, hg::ScheduleKind::OneFOneB,
                                {0, units}, nullptr,
                                hg::grad_bucket_bytes(config.parallel));
    double optimizer_bytes = 0, parameter_bytes = 0;
    for (const auto& [name, p] : model.params().all()) {
      optimizer_bytes += 4.0 * static_cast<double>(p.exp_avg.numel() + p.exp_avg_sq.numel());
      parameter_bytes += 4.0 * static_cast<double>(p.value.numel());
    }
    const int64_t row = config.train.seq_len + 1;
    const std::vector<int32_t> tokens =
        hg::bench::random_tokens(config.train.batch * row, 256, 7, 0);
    double step = 0, exposed = 0, gather = 0;
    for (int s = 0; s < o.warmup + o.steps; ++s) {
      std::vector<hg::TokenBatch> micro = hg::replica_micro_batches(config, grid.dp_rank(), {});
      for (hg::TokenBatch& mb : micro) mb.tokens = tokens.data() + mb.first_sample * row;
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = MPI_Wtime();
      const hg::DistributedStep out = hg::distributed_step(model, runtime, grid, config, s, micro);
      const double elapsed = max_over_ranks(MPI_Wtime() - t0);
      // The all-gather is the last thing the step does: time a second one (same traffic; the
      // values are unchanged by it) rather than instrument the step.
      MPI_Barrier(MPI_COMM_WORLD);
      const double g0 = MPI_Wtime();
      runtime.allgather_params();
      const double gathered = max_over_ranks(MPI_Wtime() - g0);
      const double hidden = max_over_ranks(runtime.stats().grad_sync.exposed_seconds);
      if (s < o.warmup || !out.finite) continue;
      step += elapsed / o.steps;
      exposed += hidden / o.steps;
      gather += gathered / o.steps;
    }
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    const double peak_mib = max_over_ranks(static_cast<double>(usage.ru_maxrss) / 1024.0);
    optimizer_bytes = max_over_ranks(optimizer_bytes);
    if (rank == 0)
      std::printf(
          "bench_zero: %s; dp %d, zero %d; batch %d, micro-batch %d; %d timed steps\n"
          "  per rank: optimizer %.2f MiB (parameters %.2f MiB), peak RSS %.1f MiB\n"
          "  per step: %.3f s wall, gradient %s exposed %.4f s, parameter all-gather %.4f s\n",
          o.describe().c_str(), size, o.zero, o.batch, o.micro_batch, o.steps,
          optimizer_bytes / 1048576.0, parameter_bytes / 1048576.0, peak_mib, step,
          o.zero ? "reduce-scatter" : "all-reduce", exposed, o.zero ? gather : 0.0);
  });
}
