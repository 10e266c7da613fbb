// Saving and loading checkpoints from every rank layout (§5, §6; docs/checkpoints.md).
//
// Save: no rank gathers the model. World rank 0 creates the file under a temporary name (root
// attributes, empty groups); then a token passes through the writers, one at a time (HDF5
// without MPI-IO allows one writer per file): each pipeline stage's ranks of data-parallel
// replica 0, in stage order and, within a stage, tensor-parallel rank order. Each writer opens
// the file, adds its own tensors (values and both AdamW moments) and closes it. The token returns
// to rank 0, which fsyncs and renames the file: only then is the save complete. Replicas other
// than 0 hold the same values and write nothing -- except under ZeRO-1 (parallel.zero 1), where
// each replica holds a shard of the moments: replica 0 then creates every dataset and writes the
// values and its moment shards, and the token goes on through the other replicas (same order),
// each adding its moment shards as hyperslabs (a flat range: partial row, row blocks, partial row).
// A load keeps only this replica's shard of the moments it reads.
// Load: every rank reads only its own tensors from the file (read-only, no HDF5 locking), so any
// layout resumes any checkpoint.
//
// Background saves (CheckpointSaver): at the step boundary each writer copies its tensors (a
// memcpy: training pauses only for that), then a thread writes the file while training goes on,
// on a communicator of its own. The next save, a stop, or the end of the run waits for it.
#pragma once
#include <mpi.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "model/params.h"
#include "parallel/grid.h"

namespace hg {

// Collective over the grid; writes before returning. Returns the file written (on every rank).
// Throws std::runtime_error on every rank when any writer failed (the temporary file is removed,
// no checkpoint appears).
std::string save_checkpoint(const std::string& dir, int64_t step, const std::string& config_ini,
                            const ParamStore& store, const ProcessGrid& grid);

// Saves that overlap training. One save at a time; every rank calls start() at the same steps.
class CheckpointSaver {
 public:
  // Collective (duplicates the grid's world communicator). `background` false, or an MPI without
  // MPI_THREAD_MULTIPLE, or an HDF5 that is not thread-safe: start() writes before returning.
  CheckpointSaver(const ProcessGrid& grid, bool background = true);
  ~CheckpointSaver();  // waits for a save in flight (call wait() first to see its errors)
  CheckpointSaver(const CheckpointSaver&) = delete;
  CheckpointSaver& operator=(const CheckpointSaver&) = delete;

  struct Result {
    std::string path;
    int64_t step = 0;
    double seconds = 0;        // from start() to the renamed file
    double pause_seconds = 0;  // what start() took: the time training stood still
  };

  // Collective. Waits for the save in flight, copies this rank's part, and writes
  // `dir`/step-<step>.h5 in the background; rank 0 then prunes `dir` to `keep` checkpoints.
  void start(const std::string& dir, int64_t step, const std::string& config_ini,
             const ParamStore& store, int keep);
  // Blocks until the save in flight is complete: its result, or nullopt when none was in flight.
  // Throws std::runtime_error if it failed (on every rank: the failure is broadcast).
  std::optional<Result> wait();
  // The result of a save that completed since the last wait/poll, without blocking.
  std::optional<Result> poll();

  struct Part;
  struct Snapshot;

 private:
  std::optional<Result> finish();

  const ProcessGrid& grid_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  bool background_ = false;
  std::unique_ptr<Snapshot> snapshot_;
  std::thread thread_;
  std::atomic<bool> done_{false};
  bool in_flight_ = false;
  std::string error_;  // written by the save's thread before done_
  Result result_;
};

// Collective over the grid: fills every rank's store (values, and moments when with_optimizer)
// from `path`, each rank reading only its own tensors. When the checkpoint does not hold exactly
// the tensors of the whole model (over all stages) with their shapes, throws UsageError on rank 0
// listing every mismatched name and shape (other ranks return normally: use inside the trainer's
// collective setup, which reports rank 0's error). Returns the checkpoint's step.
int64_t load_checkpoint(const std::string& path, ParamStore& store, bool with_optimizer,
                        const ProcessGrid& grid, const std::string& source);

// Checkpoint files of `dir` ("step-*.h5"), newest step first.
std::vector<std::string> list_checkpoints(const std::string& dir);

// The newest checkpoint of `dir` that reads completely with every checksum matching; damaged
// ones are skipped with a warning on stderr. "" when there is none. Not collective.
std::string newest_valid_checkpoint(const std::string& dir);

// Deletes all but the newest `keep` checkpoints of `dir` (keep <= 0: none deleted), and the
// temporary files of saves that never completed (a job killed while saving). `just_written`
// (a path as list_checkpoints() spells it), when given, is one of those kept whatever its step.
void prune_checkpoints(const std::string& dir, int keep, const std::string& just_written = "");

}  // namespace hg
