// Tensor and data parallelism on two ranks (issue 5): tp = 2 and dp = 2, each on two ranks of one
// thread, against one rank of one thread; same model, same global batch, same code path
// (distributed_step over a PipelineRuntime with pp = 1).
//
//   OMP_NUM_THREADS=1 mpirun -np 2 --bind-to core bench_parallel_layouts [options]
//     --hierarchy "2@1 4@3 2@1"  --d-model 256  --heads 4  --ffn 1024  --seq-len 768
//     --window 128  --chunk 16  --batch 8  --micro-batch 2  --steps 3  --warmup 1
//
// The baseline runs on rank 0 alone while rank 1 sleeps in a barrier (the comm layer's waits back
// off to sleeps). Communication per step:
//   tp = 2: time inside the attention/FFN all-reduces (tp_allreduce_seconds(), measured in the
//           step: transfer plus waiting for the partner rank);
//   dp = 2: the bucketed gradient all-reduce over dp_comm (trainer/grad_buckets.h): copying into
//           buckets, starting and testing them during the final backward, and waiting for what
//           is left after it (the "exposed" part, printed on its own).
// Besides wall time, each step's process CPU time (max over the ranks) is printed: on a machine
// shared with other work, a rank descheduled mid-step stretches every rank's wall time (tensor
// parallelism synchronises four times per block), while CPU time only counts work done, so the
// CPU-time speed-up is what the layout gives when each rank has its core.
#include <mpi.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/gemm.h"
#include "core/parallel_for.h"
#include "core/random.h"
#include "parallel/comm.h"
#include "parallel/grid.h"
#include "parallel/partition.h"
#include "trainer/config.h"
#include "trainer/distributed_step.h"
#include "trainer/model.h"
#include "trainer/pipeline_runtime.h"
#include "trainer/tensor_parallel.h"
#include "trainer/units.h"

namespace {

struct Options {
  std::string hierarchy = "2@1 4@3 2@1";
  int d_model = 256, heads = 4, ffn = 1024, seq_len = 768, window = 128, chunk = 16;
  int batch = 8, micro_batch = 2;
  int steps = 3, warmup = 1;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    if (a == "--hierarchy")
      o.hierarchy = value();
    else if (a == "--d-model")
      o.d_model = std::stoi(value());
    else if (a == "--heads")
      o.heads = std::stoi(value());
    else if (a == "--ffn")
      o.ffn = std::stoi(value());
    else if (a == "--seq-len")
      o.seq_len = std::stoi(value());
    else if (a == "--window")
      o.window = std::stoi(value());
    else if (a == "--chunk")
      o.chunk = std::stoi(value());
    else if (a == "--batch")
      o.batch = std::stoi(value());
    else if (a == "--micro-batch")
      o.micro_batch = std::stoi(value());
    else if (a == "--steps")
      o.steps = std::stoi(value());
    else if (a == "--warmup")
      o.warmup = std::stoi(value());
    else
      throw std::invalid_argument("unknown option " + a);
  }
  return o;
}

hg::Config make_config(const Options& o, int dp, int tp) {
  std::string ini = "[model]\nvocab_size = 256\nd_model = " + std::to_string(o.d_model) +
                    "\nheads = " + std::to_string(o.heads) + "\nffn = " + std::to_string(o.ffn) +
                    "\nwindow = " + std::to_string(o.window) +
                    "\nchunk = " + std::to_string(o.chunk) + "\nhierarchy = " + o.hierarchy +
                    "\n[train]\nseq_len = " + std::to_string(o.seq_len) +
                    "\nbatch = " + std::to_string(o.batch) +
                    "\nmicro_batch = " + std::to_string(o.micro_batch) + "\n";
  hg::Config config = hg::config_from_ini(ini);
  config.parallel.dp = dp;
  config.parallel.tp = tp;
  return config;
}

struct Result {
  double step = 0;      // mean s/step (slowest rank)
  double best = 0;      // fastest timed step
  double compute = 0;   // mean forward+backward s/step (rank 0; includes the tp all-reduces)
  double comm = 0;      // mean communication s/step (rank 0), see the header
  double cpu = 0;       // mean process CPU s/step (max over ranks)
  double comm_cpu = 0;  // mean CPU s/step inside the communication (rank 0)
  double exposed = 0;   // dp: mean s/step of the gradient all-reduce the backward did not hide
  int buckets = 0, started_early = 0;  // dp: gradient buckets, of which started in the backward
};

double cpu_seconds(clockid_t clock = CLOCK_PROCESS_CPUTIME_ID) {
  timespec t{};
  clock_gettime(clock, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

Result run(const hg::Config& config, MPI_Comm comm, const Options& o) {
  hg::ProcessGrid grid(config.parallel.dp, 1, config.parallel.tp, comm);
  const auto infos = hg::unit_infos(hg::plan_units(config.model, config.train.seq_len));
  const std::vector<int> first = {0, static_cast<int>(infos.size())};
  hg::StageModel model(config.model, config.train.seq_len, 0, -1,
                       hg::make_tensor_parallel(grid, config));
  model.params().init_all(config.train.seed);
  hg::PipelineRuntime runtime(model, grid, hg::ScheduleKind::OneFOneB, first, nullptr);
  const int64_t row = config.train.seq_len + 1;
  std::vector<int32_t> tokens(config.train.batch * row);
  const uint64_t key = hg::random_key(7, hg::RandomPurpose::Sample);
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<int32_t>(hg::philox4x32(key, hg::counter_of(0, i))[0] % 256);

  Result r;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    std::vector<hg::TokenBatch> micro = hg::replica_micro_batches(config, grid.dp_rank(), {});
    for (hg::TokenBatch& mb : micro) mb.tokens = tokens.data() + mb.first_sample * row;
    hg::comm::barrier(comm);
    const double tp0 = hg::tp_allreduce_seconds(), tpc0 = hg::tp_allreduce_cpu_seconds();
    const double t0 = MPI_Wtime(), c0 = cpu_seconds();
    hg::distributed_step(model, runtime, grid, config, s, micro);
    double elapsed = MPI_Wtime() - t0, cpu = cpu_seconds() - c0;
    double comm_seconds = hg::tp_allreduce_seconds() - tp0;
    double comm_cpu = hg::tp_allreduce_cpu_seconds() - tpc0;
    const hg::GradientSyncStats& sync = runtime.stats().grad_sync;
    comm_seconds += sync.seconds();
    r.buckets = sync.buckets;
    r.started_early = sync.started_during_backward;
    MPI_Allreduce(MPI_IN_PLACE, &elapsed, 1, MPI_DOUBLE, MPI_MAX, comm);
    MPI_Allreduce(MPI_IN_PLACE, &cpu, 1, MPI_DOUBLE, MPI_MAX, comm);
    if (s < o.warmup) continue;
    r.step += elapsed / o.steps;
    r.best = s == o.warmup ? elapsed : std::min(r.best, elapsed);
    r.compute += runtime.stats().compute_seconds / o.steps;
    r.comm += comm_seconds / o.steps;
    r.cpu += cpu / o.steps;
    r.comm_cpu += comm_cpu / o.steps;
    r.exposed += sync.exposed_seconds / o.steps;
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
        "it %.4f s/step = %.1f%% of the step\n",
        "", r.buckets, r.started_early, r.exposed, 100.0 * r.exposed / r.step);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int code = 0;
  try {
    const Options o = parse(argc, argv);
    hg::set_num_threads(1);
    if (size != 2) throw std::invalid_argument("run with mpirun -np 2");
    const hg::Config base = make_config(o, 1, 1);
    const double tokens = static_cast<double>(base.train.batch) * base.train.seq_len;
    if (rank == 0)
      std::printf(
          "bench_parallel_layouts: hierarchy \"%s\", d %d, heads %d, ffn %d, L %d, "
          "window %d, chunk %d; batch %d in micro-batches of %d (%.0f tokens/step), "
          "1 thread per rank, matrix products by %s; %d timed steps after %d warm-up\n",
          o.hierarchy.c_str(), o.d_model, o.heads, o.ffn, o.seq_len, o.window, o.chunk, o.batch,
          o.micro_batch, tokens, hg::gemm_library(), o.steps, o.warmup);
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
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_parallel_layouts: rank %d: %s\n", rank, e.what());
    code = 2;
    MPI_Abort(MPI_COMM_WORLD, code);
  }
  MPI_Finalize();
  return code;
}
