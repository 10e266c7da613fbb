// Where a training run writes, checked in setup, before any compute (issue 12): a run that
// cannot write its checkpoints, metrics or trace finds out at the first save or at the end,
// after the work; and a checkpoint directory shared by two runs mixes them (`keep` pruning by
// step number deleted the new run's only checkpoint; `resume auto` would pick the other run's).
//
// Both checks run on one rank (world rank 0, which writes the files and commits checkpoints)
// and throw UsageError naming the key, the path and the fix.
#pragma once
#include <cstdint>
#include <string>

#include "trainer/config.h"

namespace hg {

// checkpoint.dir, run.dir (when a default path uses it), log.metrics, log.trace and
// log.tensorboard: each
// directory is created when missing and must take a new file; an existing file must open for
// appending; a directory where a file is expected (and the reverse) is refused.
void check_output_paths(const Config& config, const std::string& checkpoint_dir);

// What makes a run "the same run" for a checkpoint directory: the [model] section and
// train.seed (a resumed run may change the length, the layout, logging and the like).
std::string run_identity(const Config& config);

// The checkpoint directory belongs to this run and holds nothing newer than where it starts:
//  - no checkpoint of another identity (another config or seed);
//  - a fresh run (nothing resumed) finds no checkpoint at all;
//  - a run resumed from `resume_file` (step `start_step`) finds none of a later step.
// Damaged files are left to `resume auto`'s warning.
void check_checkpoint_dir_owner(const Config& config, const std::string& dir,
                                const std::string& resume_file, int64_t start_step);

}  // namespace hg
