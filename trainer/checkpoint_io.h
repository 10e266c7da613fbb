// Canonical HDF5 checkpoints (ARCHITECTURE.md §5): /params/<name>, /optim/exp_avg/<name>,
// /optim/exp_avg_sq/<name> as full float32 tensors; root attributes format = "hourglass-checkpoint"
// and config (variable-length UTF-8 strings), version = 1 and step (int64).
// Written to "<path>.tmp-<pid>" and renamed, so a reader never sees a partial file.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "core/tensor.h"

namespace hg {

using TensorMap = std::map<std::string, Tensor>;  // canonical name -> full tensor

struct CheckpointData {
  std::string config;  // resolved INI text
  int64_t step = 0;
  TensorMap params;
  TensorMap exp_avg;     // empty map = not stored (written as zeros of the params' shapes)
  TensorMap exp_avg_sq;
};

// Atomic write: temporary file in the same directory, fsync, rename. Throws std::runtime_error.
void write_checkpoint(const std::string& path, const CheckpointData& data);

// Reads everything. Throws UsageError naming the file and what is wrong (not HDF5, wrong format
// attribute or version, missing group). `with_optimizer = false` skips the moments.
CheckpointData read_checkpoint(const std::string& path, bool with_optimizer = true);

// Reads only the root attributes (config and step).
CheckpointData read_checkpoint_header(const std::string& path);

// "step-00000042.h5"
std::string checkpoint_file_name(int64_t step);

// Reads every dataset under `group` (e.g. "/grads" of the reference fixtures) into a map keyed
// by the path below the group.
TensorMap read_tensor_group(const std::string& path, const std::string& group);

}  // namespace hg
