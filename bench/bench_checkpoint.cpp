// Checkpoint save and load (issue 6, docs/checkpoints.md): times and MB/s of the distributed
// save, of reading a checkpoint completely with its checksums (what `resume auto` and
// `hourglass info` do on rank 0), and of the per-rank load, for the reference configuration
// (d 256, hierarchy "2@1 4@3 2@1", ffn 1024, seq_len 768), next to writing the same number of
// bytes with plain write() + fsync: the pause a save imposes on training (the trainer saves in
// the background and pauses only to copy the tensors) should be no longer than that.
//
//   for n in 1 2 4; do mpirun -np $n build/bench/bench_checkpoint [--dir DIR] [--repeats N]; done
//
// Each rank is one pipeline stage (pp = ranks). Reads come from the OS page cache (the file was
// just written), as they do when a job resumes on the node that saved.
#include <fcntl.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bench/common.h"
#include "checkpoint/checkpoint_io.h"
#include "checkpoint/checkpoint_store.h"
#include "model/stage_model.h"
#include "model/units.h"
#include "parallel/grid.h"
#include "parallel/partition.h"
#include "trainer/config.h"
#include "trainer/pipeline_runtime.h"

namespace {

// The fastest of the repeats: the machine is shared, and slower repeats measure the neighbours.
double best(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

// Writes `bytes` bytes from memory (touched before, like a model's tensors) to `path` in 4 MiB
// write() calls, fsyncs, returns seconds; `atomic` adds what makes a checkpoint atomic and durable.
double raw_write(const std::string& path, int64_t bytes, bool atomic) {
  std::vector<char> memory(static_cast<size_t>(bytes), 1);
  const int64_t block = 4 << 20;
  const double t0 = MPI_Wtime();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  for (int64_t done = 0; done < bytes;) {
    const int64_t n = std::min<int64_t>(block, bytes - done);
    if (::write(fd, memory.data() + done, static_cast<size_t>(n)) != n) break;
    done += n;
  }
  ::fsync(fd);
  ::close(fd);
  double seconds = MPI_Wtime() - t0;
  if (atomic) {  // like a checkpoint: temporary name, fsync, rename, fsync of the directory
    const double r0 = MPI_Wtime();
    const std::string final_path = path + ".final";
    std::filesystem::rename(path, final_path);
    const int dir_fd =
        ::open(std::filesystem::path(path).parent_path().c_str(), O_RDONLY | O_DIRECTORY);
    ::fsync(dir_fd);
    ::close(dir_fd);
    seconds += MPI_Wtime() - r0;
    std::filesystem::remove(final_path);
  } else {
    std::filesystem::remove(path);
  }
  return seconds;
}

// Saves, loads and plain writes of one pp = size model in `dir`; rank 0 prints the best times.
void run(int rank, int size, const std::string& dir, int repeats) {
  const hg::Config config =
      hg::parse_config({"--model.d_model", "256", "--model.hierarchy", "2@1 4@3 2@1", "--model.ffn",
                        "1024", "--train.seq_len", "768", "--parallel.pp", std::to_string(size)});
  hg::ProcessGrid grid(1, size, 1);
  const auto plans = hg::plan_units(config.model, config.train.seq_len);
  const auto first =
      hg::partition_units(hg::unit_infos(plans), size, static_cast<int>(config.model.stacks.size()),
                          config.parallel.stages);
  hg::StageModel model(config.model, config.train.seq_len, first[grid.stage()],
                       first[grid.stage() + 1]);
  model.params().init_all(config.train.seed);
  for (auto& [name, p] : model.params().all()) {  // moments as after some training
    for (int64_t i = 0; i < p.value.numel(); ++i) {
      p.exp_avg[i] = 1e-3f * p.value[i];
      p.exp_avg_sq[i] = 1e-6f + p.value[i] * p.value[i];
    }
  }
  int64_t mine = model.params().count_elements(), total = 0, largest = 0;
  MPI_Allreduce(&mine, &total, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(&mine, &largest, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
  const std::string ini = config.to_ini();

  std::vector<double> save_s, pause_s, background_s, raw_s, atomic_s, verify_s, load_s;
  auto saver_owner = std::make_unique<hg::CheckpointSaver>(grid);
  hg::CheckpointSaver& saver = *saver_owner;
  std::string path;
  int64_t file_bytes = 0;
  for (int r = 0; r < repeats; ++r) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    path = hg::save_checkpoint(dir, 100 + r, ini, model.params(), grid);
    save_s.push_back(MPI_Wtime() - t0);
    // The trainer's way: training pauses for start(), the file is written behind it.
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    saver.start(dir + "-background", 100 + r, ini, model.params(), 1);
    double paused = MPI_Wtime() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &paused, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    pause_s.push_back(paused);
    background_s.push_back(saver.wait()->seconds);
    if (rank == 0) {
      file_bytes = static_cast<int64_t>(std::filesystem::file_size(path));
      raw_s.push_back(raw_write(dir + "/raw.bin", file_bytes, false));
      atomic_s.push_back(raw_write(dir + "/raw.bin", file_bytes, true));
      t0 = MPI_Wtime();
      const hg::CheckpointCheck check = hg::verify_checkpoint(path);
      verify_s.push_back(MPI_Wtime() - t0);
      if (!check.valid) std::fprintf(stderr, "bench: %s\n", check.problem.c_str());
    }
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    hg::load_checkpoint(path, model.params(), true, grid, path);
    MPI_Barrier(MPI_COMM_WORLD);
    load_s.push_back(MPI_Wtime() - t0);
    if (rank == 0) std::filesystem::remove(path);
  }
  if (rank == 0) {
    const double mb = file_bytes / 1e6;
    const double save = best(save_s), raw = best(raw_s), atomic = best(atomic_s),
                 verify = best(verify_s), load = best(load_s), pause = best(pause_s),
                 background = best(background_s);
    std::printf(
        "ranks %d (pp %d): %.2f M parameters (largest stage %.2f M), file %.1f MB, best of %d\n",
        size, size, total / 1e6, largest / 1e6, mb, repeats);
    std::printf("  save, waiting for the file    %6.3f s %6.0f MB/s\n", save, mb / save);
    std::printf("  background save: pause        %6.3f s            (training stands still)\n",
                pause);
    std::printf("  background save: file ready   %6.3f s %6.0f MB/s\n", background,
                mb / background);
    std::printf(
        "  plain write + fsync           %6.3f s %6.0f MB/s  (save / this = %.2f, pause / this = "
        "%.2f)\n",
        raw, mb / raw, save / raw, pause / raw);
    std::printf("  + rename + fsync of the dir   %6.3f s %6.0f MB/s  (save / this = %.2f)\n",
                atomic, mb / atomic, save / atomic);
    std::printf("  verify (rank 0 reads all)     %6.3f s %6.0f MB/s\n", verify, mb / verify);
    std::printf("  load (each rank its stage)    %6.3f s %6.0f MB/s\n", load, mb / load);
    std::filesystem::remove_all(dir);
    std::filesystem::remove_all(dir + "-background");
  }
  saver_owner.reset();
}

}  // namespace

int main(int argc, char** argv) {
  return hg::bench::run_mpi_main(argc, argv, "bench_checkpoint", [&](int rank, int size) {
    hg::bench::Flags flags(argc, argv, "bench_checkpoint [--dir DIR] [--repeats N]");
    const std::string dir = flags.text("--dir", "/tmp/hg-bench-checkpoint");
    const int repeats = std::max(1, flags.integer("--repeats", 7));
    flags.done();
    run(rank, size, dir + "-" + std::to_string(size), repeats);
  });
}
