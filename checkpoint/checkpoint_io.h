// Canonical HDF5 checkpoints (ARCHITECTURE.md §5): /params/<name>, /optim/exp_avg/<name>,
// /optim/exp_avg_sq/<name> as full float32 tensors; root attributes format = "hourglass-checkpoint"
// and config (variable-length UTF-8 strings), version = 1 and step (int64).
//
// Integrity (docs/checkpoints.md): every tensor dataset carries a `checksum` attribute (a sum of
// per-element hashes that hyperslab writers can each contribute to), verified whenever the whole
// dataset is read; the file uses the HDF5 1.10 format, whose metadata (superblock, object
// headers, attributes) carries checksums; the config text, kept in the one structure without a
// checksum (the global heap), is covered by a `config_sha256` root attribute. Files without
// these (the reference fixtures, other writers) read as before: checksums are verified when
// present (HDF5's own Fletcher32 filter too).
//
// A file is written under "<path>.tmp-<pid>" and renamed when complete, so a reader never sees a
// partial file. One process may write it in one call (write_checkpoint), or several processes may
// take turns (create_checkpoint_file, CheckpointAppender, commit_checkpoint_file): the distributed
// save of checkpoint_store.h.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace hg {

using TensorMap = std::map<std::string, Tensor>;  // canonical name -> full tensor
using ShapeMap = std::map<std::string, Shape>;    // canonical name -> shape

struct CheckpointData {
  std::string config;  // resolved INI text
  int64_t step = 0;
  TensorMap params;
  TensorMap exp_avg;  // empty map = not stored (written as zeros of the params' shapes)
  TensorMap exp_avg_sq;
};

// Atomic write: temporary file in the same directory, fsync, rename. Throws std::runtime_error.
void write_checkpoint(const std::string& path, const CheckpointData& data);

// Reads everything. Throws UsageError naming the file and what is wrong (not HDF5, wrong format
// attribute or version, missing group, a checksum that does not match). `with_optimizer = false`
// skips the moments.
CheckpointData read_checkpoint(const std::string& path, bool with_optimizer = true);

// Reads only the root attributes (config and step).
CheckpointData read_checkpoint_header(const std::string& path);

// Names and shapes of the tensors under /params (metadata only, no tensor data is read).
ShapeMap read_checkpoint_shapes(const std::string& path);

// Reads the root attributes and only the tensors named in `names` (those the file has; shapes
// as stored), with their moments when `with_optimizer` and the file has them. One rank of a
// pipeline reads its own stage's tensors this way.
CheckpointData read_checkpoint_tensors(const std::string& path,
                                       const std::vector<std::string>& names, bool with_optimizer);

// The result of reading a checkpoint completely (resume auto, `hourglass info`).
struct CheckpointCheck {
  bool valid = false;
  std::string problem;  // why not valid: the first problem found
  int64_t step = -1;
  std::string config;
  ShapeMap params;               // what /params holds (as far as it could be listed)
  int64_t tensors = 0;           // datasets read (params and moments)
  int64_t checksummed = 0;       // of which carry a checksum
  bool config_checksum = false;  // config_sha256 present (and matched, when valid)
  int64_t bytes = 0;             // tensor bytes read
};

// Reads every tensor once (one at a time: memory is one tensor), verifying every checksum the
// file carries, that the moments match the parameters' names and shapes, and that every value is
// finite. Never throws for a damaged file: the problem is in the result.
CheckpointCheck verify_checkpoint(const std::string& path);

// "step-00000042.h5"
std::string checkpoint_file_name(int64_t step);

// Reads every dataset under `group` (e.g. "/grads" of the reference fixtures) into a map keyed
// by the path below the group.
TensorMap read_tensor_group(const std::string& path, const std::string& group);

// ---- Writing one file from several processes, one after another ----

// One rectangular block of a tensor: start and count per dimension (row-major).
struct Hyperslab {
  std::vector<int64_t> start, count;
};

// Hyperslab covering all of `shape`.
Hyperslab whole(const Shape& shape);

// Creates `path` (truncating it) with the root attributes and the empty groups /params,
// /optim/exp_avg, /optim/exp_avg_sq, and closes it. Throws std::runtime_error.
void create_checkpoint_file(const std::string& path, const std::string& config, int64_t step);

// Opens a file made by create_checkpoint_file to add tensors. HDF5 without MPI-IO allows one
// writer at a time: the distributed save passes a token between the writers. Throws
// std::runtime_error on any failure.
class CheckpointAppender {
 public:
  explicit CheckpointAppender(const std::string& path);
  ~CheckpointAppender();  // closes without checking (after an error)
  CheckpointAppender(const CheckpointAppender&) = delete;
  CheckpointAppender& operator=(const CheckpointAppender&) = delete;

  // Creates /params/<name>, /optim/exp_avg/<name> and /optim/exp_avg_sq/<name> with `shape` and
  // writes the whole of each from values[0], values[1], values[2], with its checksum. The fast
  // path: one pass over each tensor, one attribute write.
  void write_whole(const std::string& name, const Shape& shape, const float* const values[3]);

  // Slices from several writers: create the three datasets once (any writer) ...
  void create(const std::string& name, const Shape& shape);
  // ... then each writer writes its blocks: `values` (the block's elements, row-major) into
  // `block` of dataset `path` (e.g. "/params/embed/weight", "/optim/exp_avg/embed/weight"). The
  // blocks' checksum terms are added to the datasets' checksums by close().
  void write(const std::string& path, const Hyperslab& block, const float* values);
  // Flushes and closes; throws if HDF5 cannot.
  void close();

 private:
  hid_t file_ = H5I_INVALID_HID;
  hid_t link_create_ = H5I_INVALID_HID;
  std::string path_;
  // Checksum terms (sum, elements) of what this writer wrote, per dataset; added to the
  // datasets' checksum attributes by close().
  std::map<std::string, std::pair<uint64_t, int64_t>> checksums_;
};

// fsync of the complete temporary file, rename to `path`, fsync of the directory.
void commit_checkpoint_file(const std::string& temporary, const std::string& path);

// The temporary name a process writes `path` under.
std::string temporary_checkpoint_name(const std::string& path);

}  // namespace hg
