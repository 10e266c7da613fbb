// Pipeline-parallel throughput (issue 4): pp = 2 on two ranks of one thread each against one rank
// of one thread, same model, same global batch of m micro-batches, same code path
// (distributed_step over a PipelineRuntime; pp = 1 is a schedule without messages).
//
//   OMP_NUM_THREADS=1 mpirun -np 2 --bind-to core bench_pipeline [options]
//     --hierarchy "2@1 4@3 2@1"  --d-model 256  --heads 4  --ffn 1024  --seq-len 768
//     --window 128  --chunk 16  --micro-batches 8  --micro-batch 1  --schedule 1f1b|gpipe
//     --stages A,B (parallel.stages; default: the cost model's balance)  --steps 4  --warmup 1
//     --trace FILE (Chrome trace of the last pp = 2 step)  --skip-baseline
//
// Under -np 2 the baseline runs first on rank 0 alone while rank 1 sleeps in a barrier (the
// comm layer's waits back off to sleeps, so rank 0 has its core to itself), then both ranks run
// pp = 2. Under -np 1 only the baseline runs. Prints tokens/s of both, the speed-up, the measured
// bubble next to the schedule's (p−1)/(m+p−1), each stage's compute and communication-wait time
// per step, and the ideal speed-up p·m/(m+p−1).
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/gemm.h"
#include "core/parallel_for.h"
#include "core/random.h"
#include "parallel/comm.h"
#include "parallel/grid.h"
#include "parallel/partition.h"
#include "parallel/schedule.h"
#include "parallel/trace.h"
#include "trainer/config.h"
#include "trainer/distributed_step.h"
#include "trainer/model.h"
#include "trainer/pipeline_runtime.h"
#include "trainer/units.h"

namespace {

struct Options {
  std::string hierarchy = "2@1 4@3 2@1";
  int d_model = 256, heads = 4, ffn = 1024, seq_len = 768, window = 128, chunk = 16;
  int micro_batches = 8, micro_batch = 1;
  std::string schedule = "1f1b";
  std::string stages;
  int steps = 4, warmup = 1;
  std::string trace;
  bool skip_baseline = false;
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
    else if (a == "--micro-batches")
      o.micro_batches = std::stoi(value());
    else if (a == "--micro-batch")
      o.micro_batch = std::stoi(value());
    else if (a == "--schedule")
      o.schedule = value();
    else if (a == "--stages")
      o.stages = value();
    else if (a == "--steps")
      o.steps = std::stoi(value());
    else if (a == "--warmup")
      o.warmup = std::stoi(value());
    else if (a == "--trace")
      o.trace = value();
    else if (a == "--skip-baseline")
      o.skip_baseline = true;
    else
      throw std::invalid_argument("unknown option " + a);
  }
  return o;
}

hg::Config make_config(const Options& o, int pp) {
  std::string ini = "[model]\nvocab_size = 256\nd_model = " + std::to_string(o.d_model) +
                    "\nheads = " + std::to_string(o.heads) + "\nffn = " + std::to_string(o.ffn) +
                    "\nwindow = " + std::to_string(o.window) +
                    "\nchunk = " + std::to_string(o.chunk) + "\nhierarchy = " + o.hierarchy +
                    "\n[train]\nseq_len = " + std::to_string(o.seq_len) +
                    "\nbatch = " + std::to_string(o.micro_batches * o.micro_batch) +
                    "\nmicro_batch = " + std::to_string(o.micro_batch) + "\n";
  hg::Config config = hg::config_from_ini(ini);
  config.parallel.pp = pp;
  config.parallel.schedule = o.schedule;
  config.parallel.stages = pp > 1 ? o.stages : "";
  return config;
}

struct Result {
  double seconds_per_step = 0;              // mean over the timed steps (slowest rank)
  double best_step = 0;                     // fastest timed step: least disturbed by others
  double bubble = 0;                        // mean measured bubble
  std::vector<double> compute, wait, step;  // per stage, seconds per step
};

// Runs warmup + steps updates of `config` on `comm` (every rank of it); rank 0 of `comm` gets the
// result. Random tokens: the throughput does not depend on them.
Result run(const hg::Config& config, MPI_Comm comm, const Options& o, bool trace_last) {
  hg::ProcessGrid grid(1, config.parallel.pp, 1, comm);
  const auto infos = hg::unit_infos(hg::plan_units(config.model, config.train.seq_len));
  const auto first =
      hg::partition_units(infos, config.parallel.pp, static_cast<int>(config.model.stacks.size()),
                          config.parallel.stages);
  if (grid.rank() == 0 && config.parallel.pp > 1)
    std::printf("%s\n", hg::format_partition(infos, first).c_str());
  hg::StageModel model(config.model, config.train.seq_len, first[grid.stage()],
                       first[grid.stage() + 1]);
  model.params().init_all(config.train.seed);
  hg::TraceRecorder trace(comm, trace_last && !o.trace.empty());
  trace.set_label("rank " + std::to_string(grid.rank()) + " (stage " +
                  std::to_string(grid.stage()) + ")");
  hg::PipelineRuntime runtime(model, grid, hg::parse_schedule_kind(config.parallel.schedule), first,
                              trace.enabled() ? &trace : nullptr);
  const int64_t row = config.train.seq_len + 1;
  std::vector<int32_t> tokens(config.train.batch * row);
  const uint64_t key = hg::random_key(7, hg::RandomPurpose::Sample);
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<int32_t>(hg::philox4x32(key, hg::counter_of(0, i))[0] % 256);

  Result r;
  const int pp = grid.pp();
  std::vector<double> compute(pp), wait(pp), step(pp);
  double seconds = 0, bubble = 0;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    std::vector<hg::TokenBatch> micro = hg::replica_micro_batches(config, 0, {});
    for (hg::TokenBatch& mb : micro) mb.tokens = tokens.data() + mb.first_sample * row;
    if (s == o.warmup + o.steps - 1) trace.clear();
    hg::comm::barrier(comm);
    const double t0 = MPI_Wtime();
    const hg::DistributedStep out = hg::distributed_step(model, runtime, grid, config, s, micro);
    double elapsed = MPI_Wtime() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &elapsed, 1, MPI_DOUBLE, MPI_MAX, comm);
    if (s < o.warmup) continue;
    seconds += elapsed;
    r.best_step = s == o.warmup ? elapsed : std::min(r.best_step, elapsed);
    bubble += out.bubble;
    const hg::PipelineStats& st = runtime.stats();
    std::vector<double> mine(3 * pp, 0.0);
    mine[grid.stage()] = st.compute_seconds;
    mine[pp + grid.stage()] = st.wait_seconds;
    mine[2 * pp + grid.stage()] = st.step_seconds;
    hg::comm::allreduce_sum(mine.data(), static_cast<int64_t>(mine.size()), comm);
    for (int p = 0; p < pp; ++p) {
      compute[p] += mine[p];
      wait[p] += mine[pp + p];
      step[p] += mine[2 * pp + p];
    }
  }
  if (trace.enabled()) trace.write(o.trace);
  r.seconds_per_step = seconds / o.steps;
  r.bubble = bubble / o.steps;
  for (int p = 0; p < pp; ++p) {
    r.compute.push_back(compute[p] / o.steps);
    r.wait.push_back(wait[p] / o.steps);
    r.step.push_back(step[p] / o.steps);
  }
  return r;
}

void print_stages(const char* label, const Result& r) {
  for (size_t p = 0; p < r.compute.size(); ++p)
    std::printf(
        "  %s stage %zu: schedule %.3f s/step = compute %.3f + comm wait %.4f + other %.4f\n",
        label, p, r.step[p], r.compute[p], r.wait[p], r.step[p] - r.compute[p] - r.wait[p]);
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
    if (size > 2) throw std::invalid_argument("run with mpirun -np 1 or -np 2");
    const hg::Config base = make_config(o, 1);
    const double tokens = static_cast<double>(base.train.batch) * base.train.seq_len;
    if (rank == 0)
      std::printf(
          "bench_pipeline: hierarchy \"%s\", d %d, heads %d, ffn %d, L %d, window %d, "
          "chunk %d; %d micro-batches of %d (%.0f tokens/step), %s, 1 thread per rank, "
          "matrix products by %s; %d timed steps after %d warm-up\n",
          o.hierarchy.c_str(), o.d_model, o.heads, o.ffn, o.seq_len, o.window, o.chunk,
          o.micro_batches, o.micro_batch, tokens, o.schedule.c_str(), hg::gemm_library(), o.steps,
          o.warmup);
    Result one;
    if (!o.skip_baseline) {
      MPI_Comm solo = MPI_COMM_NULL;
      MPI_Comm_split(MPI_COMM_WORLD, rank == 0 ? 0 : MPI_UNDEFINED, rank, &solo);
      if (solo != MPI_COMM_NULL) {
        one = run(base, solo, o, false);
        MPI_Comm_free(&solo);
        std::printf(
            "pp 1 (1 rank):  %.3f s/step  %8.0f tokens/s  (best step %.3f s, %.0f tokens/s)\n",
            one.seconds_per_step, tokens / one.seconds_per_step, one.best_step,
            tokens / one.best_step);
        print_stages("pp 1", one);
        std::fflush(stdout);
      }
      hg::comm::barrier(MPI_COMM_WORLD);  // rank 1 sleeps here meanwhile
    }
    if (size == 2) {
      const hg::Config config = make_config(o, 2);
      const Result two = run(config, MPI_COMM_WORLD, o, true);
      if (rank == 0) {
        const int m = o.micro_batches, p = 2;
        std::printf(
            "pp 2 (2 ranks): %.3f s/step  %8.0f tokens/s  (best step %.3f s, %.0f tokens/s)\n",
            two.seconds_per_step, tokens / two.seconds_per_step, two.best_step,
            tokens / two.best_step);
        print_stages("pp 2", two);
        const double imbalance = *std::max_element(two.compute.begin(), two.compute.end()) /
                                 (0.5 * (two.compute[0] + two.compute[1]));
        std::printf(
            "bubble: measured %.3f, theory (p-1)/(m+p-1) = %.3f; stage imbalance "
            "(max/mean compute) %.3f\n",
            two.bubble, hg::theoretical_bubble(p, m), imbalance);
        std::printf("comm wait per step: stage 0 %.4f s, stage 1 %.4f s\n", two.wait[0],
                    two.wait[1]);
        if (!o.skip_baseline)
          std::printf(
              "speed-up pp 2 / pp 1: %.3fx mean, %.3fx best step (ideal p*m/(m+p-1) = %.3fx); "
              "compute on 2 stages / compute on 1: %.3f\n",
              one.seconds_per_step / two.seconds_per_step, one.best_step / two.best_step,
              double(p) * m / (m + p - 1), (two.compute[0] + two.compute[1]) / one.compute[0]);
        if (!o.trace.empty()) std::printf("trace of the last step: %s\n", o.trace.c_str());
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_pipeline: rank %d: %s\n", rank, e.what());
    code = 2;
    MPI_Abort(MPI_COMM_WORLD, code);
  }
  MPI_Finalize();
  return code;
}
