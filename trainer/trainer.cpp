#include "trainer/trainer.h"

#include <mpi.h>

#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include "checkpoint/checkpoint.h"
#include "checkpoint/checkpoint_io.h"
#include "checkpoint/checkpoint_store.h"
#include "core/enum_names.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/parallel_for.h"
#include "data/dataset.h"
#include "data/sampler.h"
#include "model/stage_model.h"
#include "model/tensor_parallel.h"
#include "parallel/comm.h"
#include "parallel/communicator.h"
#include "parallel/grid.h"
#include "parallel/partition.h"
#include "parallel/schedule.h"
#include "parallel/trace.h"
#include "trainer/config.h"
#include "trainer/distributed_step.h"
#include "trainer/memory_estimate.h"
#include "trainer/optimizer.h"
#include "trainer/pipeline_runtime.h"
#include "trainer/progress_report.h"
#include "trainer/run_outputs.h"
#include "trainer/stop_signals.h"
#include "trainer/train_step.h"
#include "trainer/user_paths.h"
#include "trainer/validation.h"

namespace hg {
namespace {

// Runs `setup` on every rank; if any rank throws UsageError, every rank throws (as
// CollectiveUsageError) the lowest failing rank's message, so rank 0 can print it and every rank
// exits 2 before any compute.
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
  // The lowest failing rank speaks for all.
  int32_t speaker = message.empty() ? INT32_MAX : rank;
  comm::allreduce_min(&speaker, 1, world);
  if (speaker == INT32_MAX) return;
  comm::broadcast_string(message, speaker, world, "broadcast the setup error");
  throw CollectiveUsageError(message);
}

// A string from world rank 0 to every rank.
std::string broadcast_from_rank0(std::string text) {
  comm::broadcast_string(text, 0, MPI_COMM_WORLD, "broadcast from rank 0 in setup");
  return text;
}

// Runs `check` on world rank 0 only (it reads or writes files that rank 0 owns); a UsageError
// there is thrown on every rank, so that all of them leave setup together.
template <class Check>
void checked_on_rank0(Check&& check) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::string problem;
  if (rank == 0) try {
      check();
    } catch (const UsageError& e) {
      problem = e.what();
    }
  problem = broadcast_from_rank0(problem);
  require(problem.empty(), problem);
}

// checkpoint.resume: "none" -> "", "auto" -> the newest valid checkpoint of `dir` (damaged ones
// skipped with a warning; "" with a notice when there is none), else the named file, which must
// exist and read completely with its checksums. Collective; rank 0 reads the candidates fully,
// one tensor at a time, and every rank gets its choice. Throws UsageError on every rank.
std::string choose_resume_file(const std::string& resume, const std::string& dir) {
  if (resume == "none") return "";
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::string chosen, problem;
  if (rank == 0) {
    if (resume == "auto") {
      chosen = newest_valid_checkpoint(dir);
      if (chosen.empty())
        std::printf("resume auto: no complete checkpoint in %s, starting fresh\n", dir.c_str());
    } else if (!user_path_exists(resume)) {
      problem = "checkpoint.resume = " + resume +
                ": no such file. Give an existing checkpoint, `auto`, or `none`.";
    } else {
      const CheckpointCheck check = verify_checkpoint(resume);
      if (check.valid)
        chosen = resume;
      else
        problem = "checkpoint.resume = " + resume + ": " + check.problem +
                  ". Resume from an older checkpoint, or use `auto` to pick the newest valid one.";
    }
    std::fflush(stdout);
  }
  problem = broadcast_from_rank0(problem);
  require(problem.empty(), problem);
  return broadcast_from_rank0(chosen);
}

// The first parameter, in name order, whose gradient (else value) is not finite: "name gradient"
// or "name value"; "" when all are finite.
std::string first_non_finite(const ParamStore& store) {
  for (const char* what : {"gradient", "value"})
    for (const auto& [name, p] : store.all()) {
      const Tensor& held = what[0] == 'g' ? p.grad : p.value;
      // A device tensor is read through a host copy; a host one in place.
      const Tensor copy = held.device() == Device::Cpu ? Tensor() : held.to(Device::Cpu);
      const Tensor& t = held.device() == Device::Cpu ? held : copy;
      for (int64_t i = 0; i < t.numel(); ++i)
        if (!std::isfinite(t[i]))
          return name + " " + what + " (element " + std::to_string(i) + " is " +
                 std::to_string(t[i]) + ")";
    }
  return "";
}

// Collective: "stage S (rank R): name gradient (...)" for the lowest stage holding a non-finite
// gradient or value, on rank 0 ("" elsewhere, or when none is found).
std::string locate_non_finite(const ParamStore& store, const ProcessGrid& grid) {
  const std::string mine = first_non_finite(store);
  constexpr int kLength = 512;
  char line[kLength] = {};
  if (!mine.empty())
    std::snprintf(line, kLength, "stage %d (rank %d): %s", grid.stage(), grid.rank(), mine.c_str());
  std::vector<char> all(grid.rank() == 0 ? static_cast<size_t>(kLength) * grid.size() : 0);
  comm::gather(line, kLength, all.data(), 0, grid.world(), "gather non-finite reports");
  std::string found;
  int found_stage = grid.pp();
  for (int r = 0; r < static_cast<int>(all.size()) / kLength; ++r) {
    const std::string text(all.data() + r * kLength);
    const int stage = (r / grid.tp()) % grid.pp();
    if (!text.empty() && stage < found_stage) {
      found = text;
      found_stage = stage;
    }
  }
  return found;
}

// Collective: whether any rank asks to stop (its own `stop`, or a stop signal it received).
bool stop_requested_anywhere(bool stop = false) {
  int32_t any = stop || stop_signal() != 0 ? 1 : 0;
  comm::allreduce_max(&any, 1, MPI_COMM_WORLD);
  return any != 0;
}

// Everything setup makes for this rank; then training only reads and updates it.
struct TrainingRun {
  Config config;
  std::unique_ptr<ProcessGrid> grid;
  GridCommunicators comms;  // the grid's groups for training traffic, made right after it
  std::vector<UnitInfo> infos;
  std::vector<int> first;  // first unit of each (virtual) stage
  std::unique_ptr<StageModel> model;
  std::unique_ptr<TokenDataset> data;
  std::unique_ptr<BatchLoader> loader;     // first and last stages only
  std::unique_ptr<Validation> validation;  // eval.every (does nothing when 0)
  int64_t start_step = 0;
  std::string checkpoint_dir, resume_file;
};

// Setup, part 1: where the run writes, and whose checkpoints its directory holds (before any
// allocation); the checkpoint to resume, if any.
void check_run_directories(TrainingRun& run) {
  const Config& config = run.config;
  run.checkpoint_dir = config.checkpoint.dir.empty()
                           ? (std::filesystem::path(config.run.dir) / "checkpoints").string()
                           : config.checkpoint.dir;
  checked_on_rank0([&] { check_output_paths(config, run.checkpoint_dir); });
  run.resume_file = choose_resume_file(config.checkpoint.resume, run.checkpoint_dir);
  checked_on_rank0([&] {
    const int64_t resume_step =
        run.resume_file.empty() ? 0 : read_checkpoint_header(run.resume_file).step;
    check_checkpoint_dir_owner(config, run.checkpoint_dir, run.resume_file, resume_step);
  });
}

// Setup, part 2: the partition into (virtual) stages, the memory check, this rank's stage model
// with its initial (or resumed, or init_from) weights.
void build_stage(TrainingRun& run) {
  const Config& config = run.config;
  const ProcessGrid& grid = *run.grid;
  auto plans = plan_units(config.model, config.train.seq_len);
  run.infos = unit_infos(plans);
  // Interleaved: pp·v virtual stages, this rank's chunks every pp-th of them.
  const int virtual_stages = config.parallel.pp * config.parallel.virtual_stages;
  require(
      config.parallel.virtual_stages == 1 || virtual_stages <= static_cast<int>(run.infos.size()),
      "parallel.pp x parallel.virtual_stages = " + std::to_string(virtual_stages) +
          " virtual stages, but the model has only " + std::to_string(run.infos.size()) +
          " units (embed, blocks, stack norms, down/up, head) and each virtual stage needs "
          "one; use fewer virtual stages");
  run.first = partition_units(run.infos, virtual_stages,
                              static_cast<int>(config.model.stacks.size()), config.parallel.stages);
  // Before any parameter or activation exists: a layout too large for the node is refused here
  // (exit 2) instead of dying of std::bad_alloc mid-run.
  check_node_memory(config, plans, run.first, grid.stage(), MPI_COMM_WORLD);
  run.model = std::make_unique<StageModel>(
      config.model, config.train.seq_len, rank_chunks(run.first, config.parallel.pp, grid.stage()),
      make_tensor_parallel(grid, run.comms, trained_granularities(config)),
      recompute_blocks(config.train), backend_for(config.run.device), zero_shard(config, grid));
  run.model->params().init_all(config.train.seed);
  if (!run.resume_file.empty()) {
    run.start_step =
        load_checkpoint(run.resume_file, run.model->params(), true, grid, run.resume_file);
    if (grid.rank() == 0)
      std::printf("resumed from %s at step %ld\n", run.resume_file.c_str(), long(run.start_step));
  } else if (!config.checkpoint.init_from.empty()) {
    require(user_path_exists(config.checkpoint.init_from),
            "checkpoint.init_from = " + config.checkpoint.init_from + ": no such file.");
    load_checkpoint(config.checkpoint.init_from, run.model->params(), false, grid,
                    config.checkpoint.init_from);
  }
}

// Setup, part 3: the training data, on the stages that read tokens (embedding and head), and the
// validation windows.
void open_data(TrainingRun& run) {
  const Config& config = run.config;
  run.validation = std::make_unique<Validation>(config, *run.grid);
  if (config.train.steps == 0 || !(run.grid->first_stage() || run.grid->last_stage())) return;
  require(!config.data.dir.empty(),
          "data.dir is not set: give --data.dir DIR (a directory made by `hourglass prep`).");
  run.data = std::make_unique<TokenDataset>(config.data.dir, "train");
  require_vocabulary_fits(*run.data, "data.dir " + config.data.dir, config.model.vocab_size,
                          "model.vocab_size",
                          "set --model.vocab_size " + std::to_string(run.data->vocab_size()));
  run.loader = std::make_unique<BatchLoader>(*run.data, config.train.seed, config.train.seq_len,
                                             config.train.batch, config.parallel.dp,
                                             run.grid->dp_rank(), config.train.micro_batch);
}

// This process's rank among the ranks of its node, and their number.
struct NodePlace {
  int rank = 0;
  int ranks = 1;
};
NodePlace node_place() {
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  NodePlace place;
  MPI_Comm_rank(node, &place.rank);
  MPI_Comm_size(node, &place.ranks);
  MPI_Comm_free(&node);
  return place;
}

// run.device: refused (exit 2, before any compute) where this build or machine has no such
// device; a GPU is picked by node-local rank (backend.h).
void check_training_device(const Config& config) {
  const Device device = config.run.device;
  if (device == Device::Cpu) return;
  const std::string name = device_name(device);
  const std::string why = unavailable_reason(device);
  require(why.empty(), "run.device = " + name + ": " + why + "; use --run.device cpu");
  select_device(device, node_place().rank);
}

// Whether two ranks of the job drive one GPU: a node with more ranks than GPUs (select_device
// gives node-local rank r the GPU r mod count). Collective over the world.
bool ranks_share_a_gpu(Device device) {
  int32_t shared = node_place().ranks > device_count(device) ? 1 : 0;
  comm::allreduce_max(&shared, 1, MPI_COMM_WORLD);
  return shared != 0;
}

// parallel.communicator on run.device cuda: NCCL for the tp, pp and dp groups when asked, or (auto)
// when every rank has a GPU of its own, as NCCL refuses two ranks on one device; host-staged MPI
// otherwise. The emulated device is one device for every rank, where its MPI-based NCCL does not
// mind: a forced nccl runs there (the tests of this path).
bool use_nccl(const Config& config) {
  if (config.run.device != Device::Cuda) return false;
  const CommunicatorChoice choice = config.parallel.communicator;
  const bool shared = ranks_share_a_gpu(config.run.device);
#ifndef HG_CUDA_EMULATED
  require(choice != CommunicatorChoice::Nccl || !shared,
          "parallel.communicator = nccl: some node runs more ranks than it has GPUs, and NCCL "
          "needs a GPU per rank; start one rank per GPU, or use auto or mpi (host-staged)");
#endif
  return choice == CommunicatorChoice::Nccl || (choice == CommunicatorChoice::Auto && !shared);
}

// train.precision for every matrix product of this process (core/gemm.h), refused where the CPU
// cannot multiply bf16 natively (a slow bf16 would defeat its purpose). On a GPU every device
// multiplies bf16 (cuBLAS, core/cuda/gemm.cu).
void set_training_precision(MatmulPrecision precision, Device device) {
  std::string why;
  require(
      precision == MatmulPrecision::Fp32 || device != Device::Cpu || bf16_matmul_supported(&why),
      "train.precision = bf16: " + why + "; use --train.precision fp32");
  set_matmul_precision(precision);
}

// run.attention_backend (validated against run.device and train.precision by parse_config):
// cudnn also needs a cuDNN this process can load, checked here before any compute.
void set_training_attention(AttentionBackend backend) {
  if (backend == AttentionBackend::Cudnn) {
    const std::string why = cudnn_attention_unavailable_reason();
    require(why.empty(), "run.attention_backend = cudnn: " + why + "; use native");
  }
  set_attention_backend(backend);
}

// Every check that can fail on bad input, before any compute; collective.
void set_up(TrainingRun& run, const std::vector<std::string>& args) {
  collective_setup(MPI_COMM_WORLD, [&] {
    Config& config = run.config;
    config = parse_config(args);  // checks heads, every MatFormer band and ffn against parallel.tp
    // run.device cuda: one GPU per rank, its node-local rank modulo the GPUs it sees (ranks that
    // share a GPU share it); everything that crosses ranks is staged through host memory.
    check_training_device(config);
    run.grid =
        std::make_unique<ProcessGrid>(config.parallel.dp, config.parallel.pp, config.parallel.tp);
    run.comms = make_training_communicators(*run.grid, config.run.device, use_nccl(config));
    comm::set_timeout(config.parallel.timeout);
    set_num_threads(config.run.threads);
    set_training_precision(config.train.precision, config.run.device);
    set_training_attention(config.run.attention_backend);
    check_run_directories(run);
    build_stage(run);
    open_data(run);
  });
}

// Rank 0: the resolved configuration, the layout and the partition.
void print_layout(const TrainingRun& run) {
  const Config& config = run.config;
  std::printf("# hourglass train: resolved configuration\n%s\n", config.to_ini().c_str());
  const std::string products =
      config.run.device == Device::Cpu
          ? std::string(gemm_library()) + " in " + enum_name(config.train.precision)
          : std::string("cuBLAS in ") + enum_name(config.train.precision) + ", attention " +
                enum_name(config.run.attention_backend) +
                ", on run.device cuda (a GPU per rank by node-local rank; traffic: tp " +
                run.comms.tp->name() + ", pp " + run.comms.pp->name() + ", dp " +
                run.comms.dp->name() + ")";
  std::printf(
      "layout: dp %d x pp %d x tp %d = %d ranks, schedule %s%s, %d threads per rank, "
      "matrix products by %s\n",
      config.parallel.dp, config.parallel.pp, config.parallel.tp, run.grid->size(),
      schedule_name(config.parallel.schedule),
      config.parallel.virtual_stages > 1
          ? (" (" + std::to_string(config.parallel.virtual_stages) +
             " virtual stages per rank: stage k below runs on rank k mod pp)")
                .c_str()
          : "",
      num_threads(), products.c_str());
  std::printf("%s\n", format_partition(run.infos, run.first).c_str());
  std::fflush(stdout);
}

// Collective: after a non-finite step (no update applied, the culprit gradients still in the
// stores), rank 0 names the first non-finite parameter and the last good checkpoint.
void report_non_finite(const TrainingRun& run, const StepMetrics& metrics) {
  const std::string where = locate_non_finite(run.model->params(), *run.grid);
  if (run.grid->rank() != 0) return;
  const auto saved = list_checkpoints(run.checkpoint_dir);
  std::fprintf(stderr,
               "hourglass train: failure: non-finite %s at step %ld (loss %g, grad-norm %g); "
               "first non-finite parameter: %s. Stopping without saving; the last good "
               "checkpoint is %s. Lower train.lr or raise train.warmup, and resume "
               "from it.\n",
               std::isfinite(metrics.loss) ? "gradient" : "loss", long(metrics.step), metrics.loss,
               metrics.grad_norm,
               where.empty() ? "none found (only the loss is non-finite)" : where.c_str(),
               saved.empty() ? "none (no checkpoint was saved)" : saved.front().c_str());
}

}  // namespace

int train_main(const std::vector<std::string>& args) {
  TrainingRun run;
  set_up(run, args);
  const Config& config = run.config;
  const ProcessGrid& grid = *run.grid;
  const bool rank0 = grid.rank() == 0;
  if (rank0) print_layout(run);

  const std::string config_ini = config.to_ini();
  if (config.train.steps == 0 || run.start_step >= config.train.steps) {
    std::string path =
        save_checkpoint(run.checkpoint_dir, run.start_step, config_ini, run.model->params(), grid);
    if (rank0) std::printf("checkpoint %s (step %ld)\n", path.c_str(), long(run.start_step));
    return kExitOk;
  }
  // A stop signal that came during setup (the watcher records it from the first line of main):
  // nothing was computed, so there is nothing new to save; the newest checkpoint, if any, is
  // the one this run started from.
  if (stop_requested_anywhere()) {
    if (rank0)
      std::printf(
          "stopped by a signal during setup, before step %ld: nothing new to save; "
          "exit %d to requeue\n",
          long(run.start_step + 1), kExitStopped);
    return kExitStopped;
  }

  TraceRecorder trace(MPI_COMM_WORLD, !config.log.trace.empty());
  trace.set_label("rank " + std::to_string(grid.rank()) + " (stage " +
                  std::to_string(grid.stage()) + ")");
  PipelineRuntime runtime(*run.model, grid, run.comms, config.parallel.schedule, run.first,
                          config.log.trace.empty() ? nullptr : &trace,
                          grad_bucket_bytes(config.parallel));
  ProgressReport progress(config, grid, run.start_step);
  const auto run_start = std::chrono::steady_clock::now();
  double measured_save_seconds = 0;
  CheckpointSaver saver(grid);
  auto report_save = [&](const std::optional<CheckpointSaver::Result>& saved) {
    if (!saved) return;
    measured_save_seconds = saved->seconds;  // the time-limit margin counts the whole save
    if (rank0) {
      std::printf("checkpoint %s (%.2f s; training paused %.3f s)\n", saved->path.c_str(),
                  saved->seconds, saved->pause_seconds);
      std::fflush(stdout);
    }
  };
  int exit_code = kExitOk;
  for (int64_t s = run.start_step; s < config.train.steps; ++s) {
    // Load, step, report.
    std::vector<MicroBatch> loaded;
    if (run.loader) loaded = run.loader->load_step(s);
    const DistributedStep step =
        distributed_step(*run.model, runtime, grid, config, s,
                         replica_micro_batches(config, grid.dp_rank(), loaded));
    report_save(saver.poll());
    if (!step.finite) {
      report_save(saver.wait());  // a save of the last good weights may still be in flight
      report_non_finite(run, step.metrics);
      exit_code = kExitFailure;
      break;
    }
    std::optional<ValidationResult> valid;
    if (run.validation->due(step.metrics.step)) valid = run.validation->run(runtime);
    progress.step(step, runtime.stats(), valid ? &*valid : nullptr);

    // Maybe save, maybe stop: a signal on any rank, or the time limit minus the measured save.
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    const bool stop = stop_requested_anywhere(
        config.run.time_limit > 0 &&
        elapsed + 2.0 * (step.metrics.seconds + measured_save_seconds) + 5.0 >
            config.run.time_limit);
    const bool last = s + 1 == config.train.steps;
    const bool periodic = config.checkpoint.every > 0 && (s + 1) % config.checkpoint.every == 0;
    if (periodic || stop || last) {
      // In the background: training stands still only while the tensors are copied. A stop or
      // the last step waits for the file (exit 75 promises a complete checkpoint).
      saver.start(run.checkpoint_dir, s + 1, config_ini, run.model->params(),
                  config.checkpoint.keep);
      if (stop || last) report_save(saver.wait());
    }
    if (stop && !last) {
      if (rank0)
        std::printf("stopped at step %ld (signal or time limit); exit %d to requeue\n", long(s + 1),
                    kExitStopped);
      exit_code = kExitStopped;
      break;
    }
  }
  report_save(saver.wait());
  if (!config.log.trace.empty()) {
    trace.write(config.log.trace);
    if (rank0) std::printf("trace %s\n", config.log.trace.c_str());
  }
  return exit_code;
}

}  // namespace hg
