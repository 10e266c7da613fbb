// Saving and loading checkpoints from every rank layout (§5, §6).
//
// Save: each pipeline stage's parameters (held identically by every data-parallel replica, so
// replica 0 speaks for them) are sent to world rank 0, which writes the canonical file through a
// temporary name and renames it. Rank 0 therefore holds the whole model for the time of a save:
// fine for the models this machine trains; the hyperslab-parallel writer of issue 6 removes it.
// Load: every rank reads the file (read-only, no HDF5 locking) and takes its own parameters, so
// any layout resumes any checkpoint.
#pragma once
#include <string>
#include <vector>

#include "parallel/grid.h"
#include "trainer/params.h"

namespace hg {

// Collective over the grid. Returns the file written (on rank 0; "" elsewhere).
std::string save_checkpoint(const std::string& dir, int64_t step, const std::string& config_ini,
                            const ParamStore& store, const ProcessGrid& grid);

// Checkpoint files of `dir` ("step-*.h5"), newest step first.
std::vector<std::string> list_checkpoints(const std::string& dir);

// Deletes all but the newest `keep` checkpoints of `dir` (keep <= 0: none deleted).
void prune_checkpoints(const std::string& dir, int keep);

}  // namespace hg
