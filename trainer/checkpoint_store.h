// Saving and loading checkpoints from every rank layout (§5, §6; docs/checkpoints.md).
//
// Save: no rank gathers the model. World rank 0 creates the file under a temporary name (root
// attributes, empty groups); then a token passes through the writers, one at a time (HDF5
// without MPI-IO allows one writer per file): each pipeline stage's ranks of data-parallel
// replica 0, in stage order and, within a stage, tensor-parallel rank order. Each writer opens
// the file, adds its own tensors (values and both AdamW moments) and closes it. The token returns
// to rank 0, which fsyncs and renames the file: only then is the save complete. Replicas other
// than 0 hold the same values and write nothing.
// Load: every rank reads only its own tensors from the file (read-only, no HDF5 locking), so any
// layout resumes any checkpoint.
#pragma once
#include <string>
#include <vector>

#include "parallel/grid.h"
#include "trainer/params.h"

namespace hg {

// Collective over the grid. Returns the file written (on every rank). Throws std::runtime_error
// on every rank when any writer failed (the temporary file is removed, no checkpoint appears).
std::string save_checkpoint(const std::string& dir, int64_t step, const std::string& config_ini,
                            const ParamStore& store, const ProcessGrid& grid);

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
// temporary files of saves that never completed (a job killed while saving).
void prune_checkpoints(const std::string& dir, int keep);

}  // namespace hg
