#include "trainer/trainer.h"

#include <mpi.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "core/gemm.h"
#include "core/parallel_for.h"
#include "data/dataset.h"
#include "data/sampler.h"
#include "parallel/comm.h"
#include "parallel/grid.h"
#include "parallel/partition.h"
#include "parallel/schedule.h"
#include "parallel/trace.h"
#include "trainer/checkpoint.h"
#include "trainer/checkpoint_io.h"
#include "trainer/checkpoint_store.h"
#include "trainer/config.h"
#include "trainer/distributed_step.h"
#include "trainer/metrics_log.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/pipeline_runtime.h"
#include "trainer/train_step.h"

namespace hg {
namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
void on_stop_signal(int sig) { g_stop_signal = sig; }

// Runs `setup` on every rank; if any rank throws UsageError, every rank throws (as
// CollectiveUsageError) the lowest failing rank's message, so rank 0 can print it and every rank exits 2 before any compute.
template <class Setup>
void collective_setup(MPI_Comm world, Setup&& setup) {
  std::string message;
  try {
    setup();
  } catch (const UsageError& e) {
    message = e.what();
  }
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  struct {
    int failed;
    int rank;
  } mine{message.empty() ? 0 : 1, rank}, worst{};
  MPI_Allreduce(&mine, &worst, 1, MPI_2INT, MPI_MAXLOC, world);
  if (!worst.failed) return;
  // MAXLOC picks the lowest rank among equal maxima.
  int length = static_cast<int>(message.size());
  MPI_Bcast(&length, 1, MPI_INT, worst.rank, world);
  message.resize(length);
  MPI_Bcast(message.data(), length, MPI_CHAR, worst.rank, world);
  throw CollectiveUsageError(message);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", long(s / 3600), long(s / 60 % 60));
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", long(s / 60), long(s % 60));
  else std::snprintf(buf, sizeof buf, "%lds", long(s));
  return buf;
}

}  // namespace

int train_main(const std::vector<std::string>& args) {
  Config config;
  std::unique_ptr<ProcessGrid> grid;
  std::vector<UnitInfo> infos;
  std::vector<int> first;
  std::unique_ptr<StageModel> model;
  std::unique_ptr<TokenDataset> data;
  std::unique_ptr<BatchLoader> loader;
  int64_t start_step = 0;
  std::string checkpoint_dir;
  int world_rank = 0, world_size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);

  // ---- setup: every check that can fail on bad input, before any compute ----
  collective_setup(MPI_COMM_WORLD, [&] {
    config = parse_config(args);
    require(config.parallel.tp == 1,
            "parallel.tp = " + std::to_string(config.parallel.tp) +
                ": tensor parallelism is not implemented yet; use --parallel.tp 1");
    require(config.run.device == "cpu",
            "run.device = " + config.run.device +
                ": this build trains on the CPU only (the CUDA backend has no trainer yet); use "
                "--run.device cpu");
    grid = std::make_unique<ProcessGrid>(config.parallel.dp, config.parallel.pp, config.parallel.tp);
    comm::set_timeout(config.parallel.timeout);
    set_num_threads(config.run.threads);
    auto plans = plan_units(config.model, config.train.seq_len);
    infos = unit_infos(plans);
    first = partition_units(infos, config.parallel.pp, static_cast<int>(config.model.stacks.size()),
                            config.parallel.stages);
    const int stage = grid->stage();
    model = std::make_unique<StageModel>(config.model, config.train.seq_len, first[stage],
                                         first[stage + 1]);
    model->params().init_all(config.train.seed);
    checkpoint_dir = config.checkpoint.dir.empty()
                         ? (std::filesystem::path(config.run.dir) / "checkpoints").string()
                         : config.checkpoint.dir;
    std::string resume_file;
    if (config.checkpoint.resume == "auto") {
      auto files = list_checkpoints(checkpoint_dir);
      if (!files.empty()) resume_file = files.front();
      else if (world_rank == 0)
        std::printf("resume auto: no checkpoint in %s, starting fresh\n", checkpoint_dir.c_str());
    } else if (config.checkpoint.resume != "none") {
      resume_file = config.checkpoint.resume;
      require(std::filesystem::exists(resume_file),
              "checkpoint.resume = " + resume_file +
                  ": no such file. Give an existing checkpoint, `auto`, or `none`.");
    }
    if (!resume_file.empty()) {
      CheckpointData ckpt = read_checkpoint(resume_file, true);
      import_params(model->params(), ckpt, true, true, resume_file);
      start_step = ckpt.step;
      if (world_rank == 0) std::printf("resumed from %s at step %ld\n", resume_file.c_str(), long(start_step));
    } else if (!config.checkpoint.init_from.empty()) {
      require(std::filesystem::exists(config.checkpoint.init_from),
              "checkpoint.init_from = " + config.checkpoint.init_from + ": no such file.");
      CheckpointData ckpt = read_checkpoint(config.checkpoint.init_from, false);
      import_params(model->params(), ckpt, false, true, config.checkpoint.init_from);
    }
    if (config.train.steps > 0 && (grid->first_stage() || grid->last_stage())) {
      require(!config.data.dir.empty(),
              "data.dir is not set: give --data.dir DIR (a directory made by `hourglass prep`).");
      data = std::make_unique<TokenDataset>(config.data.dir, "train");
      require(data->vocab_size() <= config.model.vocab_size,
              "data.dir " + config.data.dir + " has vocabulary " + std::to_string(data->vocab_size()) +
                  " but model.vocab_size is " + std::to_string(config.model.vocab_size) +
                  "; set --model.vocab_size " + std::to_string(data->vocab_size()));
      loader = std::make_unique<BatchLoader>(*data, config.train.seed, config.train.seq_len,
                                             config.train.batch, config.parallel.dp,
                                             grid->dp_rank(), config.train.micro_batch);
    }
  });

  const bool rank0 = world_rank == 0;
  if (rank0) {
    std::printf("# hourglass train: resolved configuration\n%s\n", config.to_ini().c_str());
    std::printf("layout: dp %d x pp %d x tp %d = %d ranks, schedule %s, %d threads per rank, "
                "matrix products by %s\n",
                config.parallel.dp, config.parallel.pp, config.parallel.tp, world_size,
                config.parallel.schedule.c_str(), num_threads(), gemm_library());
    std::printf("%s\n", format_partition(infos, first).c_str());
    std::fflush(stdout);
  }

  const std::string config_ini = config.to_ini();
  if (config.train.steps == 0 || start_step >= config.train.steps) {
    std::string path = save_checkpoint(checkpoint_dir, start_step, config_ini, model->params(), *grid);
    if (rank0) std::printf("checkpoint %s (step %ld)\n", path.c_str(), long(start_step));
    return kExitOk;
  }

  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);

  TraceRecorder trace(MPI_COMM_WORLD, !config.log.trace.empty());
  trace.set_label("rank " + std::to_string(world_rank) + " (stage " + std::to_string(grid->stage()) + ")");
  PipelineRuntime runtime(*model, *grid, parse_schedule_kind(config.parallel.schedule), first,
                          config.log.trace.empty() ? nullptr : &trace);
  const int micro_batches = config.train.batch / config.parallel.dp / config.train.micro_batch;
  const double tokens_per_step = static_cast<double>(config.train.batch) * config.train.seq_len;
  const double theory_bubble = theoretical_bubble(config.parallel.pp, micro_batches);
  std::unique_ptr<MetricsLog> metrics_log;
  if (rank0)
    metrics_log = std::make_unique<MetricsLog>(
        config.log.metrics.empty() ? (std::filesystem::path(config.run.dir) / "metrics.jsonl").string()
                                   : config.log.metrics,
        start_step > 0);

  const auto run_start = std::chrono::steady_clock::now();
  double measured_save_seconds = 0;
  int64_t s = start_step;
  int exit_code = kExitOk;
  double window_seconds = 0;
  int64_t window_steps = 0;
  for (; s < config.train.steps; ++s) {
    std::vector<MicroBatch> loaded;
    std::vector<const int32_t*> tokens;
    if (loader) {
      loaded = loader->load_step(s);
      for (const MicroBatch& mb : loaded) tokens.push_back(mb.tokens.data());
    }
    DistributedStep step = distributed_step(*model, runtime, *grid, config, s,
                                            replica_micro_batches(config, grid->dp_rank(), tokens));
    const StepMetrics& metrics = step.metrics;
    if (!step.finite) {
      if (rank0)
        std::fprintf(stderr,
                     "hourglass: non-finite %s at step %ld (loss %g, grad-norm %g); stopping "
                     "without saving. The last good checkpoint is in %s; lower train.lr or "
                     "raise train.warmup.\n",
                     std::isfinite(metrics.loss) ? "gradient" : "loss", long(s + 1), metrics.loss,
                     metrics.grad_norm, checkpoint_dir.c_str());
      exit_code = kExitFailure;
      break;
    }
    const double bubble = step.bubble;

    window_seconds += metrics.seconds;
    ++window_steps;
    if (rank0) {
      metrics_log->write(metrics, bubble, runtime.stats().max_live);
      const bool last = s + 1 == config.train.steps;
      if ((config.log.every > 0 && (s + 1) % config.log.every == 0) || last || s == start_step) {
        const double per_step = window_seconds / window_steps;
        std::printf("step %5ld/%ld | loss %.4f | bpc %.4f | lr %.2e | grad-norm %.3f | %.0f tok/s"
                    " | bubble %.2f (theory %.2f) | ETA %s\n",
                    long(s + 1), long(config.train.steps), metrics.loss, metrics.bpc, metrics.lr,
                    metrics.grad_norm, tokens_per_step / per_step, bubble, theory_bubble,
                    format_duration(per_step * (config.train.steps - s - 1)).c_str());
        std::fflush(stdout);
        window_seconds = 0;
        window_steps = 0;
      }
    }

    // Stop requests: a signal on any rank, or the time limit minus the measured save time.
    int stop = g_stop_signal != 0 ? 1 : 0;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    if (config.run.time_limit > 0 &&
        elapsed + 2.0 * (metrics.seconds + measured_save_seconds) + 5.0 > config.run.time_limit)
      stop = 1;
    MPI_Allreduce(MPI_IN_PLACE, &stop, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    const bool periodic = config.checkpoint.every > 0 && (s + 1) % config.checkpoint.every == 0;
    if (periodic || stop || s + 1 == config.train.steps) {
      const double c0 = MPI_Wtime();
      std::string path = save_checkpoint(checkpoint_dir, s + 1, config_ini, model->params(), *grid);
      measured_save_seconds = MPI_Wtime() - c0;
      if (rank0) {
        prune_checkpoints(checkpoint_dir, config.checkpoint.keep);
        std::printf("checkpoint %s (%.2f s)\n", path.c_str(), measured_save_seconds);
        std::fflush(stdout);
      }
    }
    if (stop && s + 1 < config.train.steps) {
      if (rank0) std::printf("stopped at step %ld (signal or time limit); exit %d to requeue\n",
                             long(s + 1), kExitStopped);
      exit_code = kExitStopped;
      ++s;
      break;
    }
  }
  if (!config.log.trace.empty()) {
    trace.write(config.log.trace);
    if (rank0) std::printf("trace %s\n", config.log.trace.c_str());
  }
  return exit_code;
}

}  // namespace hg
