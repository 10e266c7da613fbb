#include "checkpoint/checkpoint_store.h"

#include <hdf5.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "checkpoint/checkpoint.h"
#include "checkpoint/checkpoint_io.h"
#include "core/error.h"
#include "parallel/comm.h"

namespace hg {
namespace {

constexpr int kTagToken = 30011;

// The token a writer passes to the next: ok, and the temporary file's path (or, after a
// failure, the message).
struct Token {
  bool ok = true;
  std::string text;
};

void send_token(const Token& token, int to, MPI_Comm comm) {
  comm::send_string(std::string(1, token.ok ? '1' : '0') + token.text, to, kTagToken, comm,
                    "send checkpoint token");
}

Token receive_token(int from, MPI_Comm comm) {
  const std::string message = comm::recv_string(from, kTagToken, comm, "recv checkpoint token");
  return {!message.empty() && message[0] == '1',
          message.substr(std::min<size_t>(1, message.size()))};
}

// The writers in turn: replica 0's ranks, stage by stage, tensor-parallel rank by rank (each
// writes its own slices as hyperslabs; rank 0 of the group also the replicated tensors).
// ZeRO-1 (`moment_shards`): after replica 0, every other replica's ranks in the same order, each
// adding its moment shards to the datasets replica 0 created.
std::vector<int> writer_order(const ProcessGrid& grid, bool moment_shards) {
  std::vector<int> order;
  for (int d = 0; d < (moment_shards ? grid.dp() : 1); ++d)
    for (int p = 0; p < grid.pp(); ++p)
      for (int t = 0; t < grid.tp(); ++t) order.push_back(grid.rank_of(d, p, t));
  return order;
}

// The trainer never saves non-finite weights or moments (it stops with exit 3 first); this is
// the last line of defence: one branch-free pass that vectorises (exponent bits all ones = inf
// or NaN), then a search for the culprit only when there is one.
void require_finite(const std::string& name, const Tensor& t) {
  uint32_t bad = 0;
  const float* v = t.data();
#pragma omp simd reduction(| : bad)
  for (int64_t i = 0; i < t.numel(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, v + i, sizeof bits);
    bad |= (bits & 0x7f800000u) == 0x7f800000u;
  }
  if (!bad) return;
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(v[i]))
      throw std::runtime_error("refusing to save " + name + ": element " + std::to_string(i) +
                               " is " + std::to_string(v[i]));
}

}  // namespace

// ---- one save, on any communicator spanning the grid's ranks in world order ----

// What one writer writes: value, exp_avg, exp_avg_sq of each of its tensors as this rank holds
// them (a tensor-parallel slice or the whole canonical tensor), either views of the store
// (synchronous save) or of a snapshot.
struct CheckpointSaver::Part {
  struct Entry {
    std::array<const Tensor*, 3> local;  // value, exp_avg, exp_avg_sq
    Shape canonical_shape;
    ParamSlice slice;
    // ZeRO-1: the moments are the value's elements [shard_offset, + numel) (model/params.h).
    bool moment_shard = false;
    int64_t shard_offset = 0;
    Shape local_shape;  // the value's
  };
  std::map<std::string, Entry> tensors;
  bool writes_values = true;   // data-parallel replica 0; under ZeRO-1 the others add moment shards
  bool moment_shards = false;  // ZeRO-1: every replica writes (writer_order)
  // Tensor-parallel rank 0 writes the replicated tensors and creates the sharded datasets, which
  // every rank of the group (itself first) then fills with its own blocks.
  bool first_of_group = true;
};

struct CheckpointSaver::Snapshot {
  std::map<std::string, std::array<Tensor, 3>> tensors;  // reused from save to save
};

namespace {

// The hyperslabs of a sharded tensor this rank holds: one per run of consecutive canonical
// indices along the slice's axis (one for a head split, one per MatFormer band for an FFN), with
// the run's local start.
struct SliceRun {
  int64_t local_start = 0;
  Hyperslab block;
};
std::vector<SliceRun> slice_runs(const Shape& canonical, const ParamSlice& slice) {
  std::vector<SliceRun> runs;
  const auto& index = slice.index;
  for (size_t i = 0; i < index.size();) {
    size_t j = i + 1;
    while (j < index.size() && index[j] == index[j - 1] + 1) ++j;
    SliceRun run{static_cast<int64_t>(i), whole(canonical)};
    run.block.start[slice.axis] = index[i];
    run.block.count[slice.axis] = static_cast<int64_t>(j - i);
    runs.push_back(std::move(run));
    i = j;
  }
  return runs;
}

// block (=) the run's elements of `local` in row-major order: [outer, run, inner] out of
// [outer, local extent, inner].
void gather_run(const Tensor& local, const ParamSlice& slice, const SliceRun& run,
                std::vector<float>& block) {
  const Shape& shape = local.shape();
  int64_t outer = 1, inner = 1;
  for (int a = 0; a < slice.axis; ++a) outer *= shape[a];
  for (int a = slice.axis + 1; a < static_cast<int>(shape.size()); ++a) inner *= shape[a];
  const int64_t extent = shape[slice.axis], length = run.block.count[slice.axis];
  block.resize(static_cast<size_t>(outer * length * inner));
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(block.data() + o * length * inner,
                local.data() + (o * extent + run.local_start) * inner,
                sizeof(float) * length * inner);
}

// ZeRO-1: elements [begin, begin + n) of a local tensor (shape `local`, this rank's `slice` of
// `canonical`) into dataset `path`. A shard is a flat range, which no one rectangle holds: it goes
// as a partial row, blocks of whole rows and a partial row (rows: the last dimension). A block of
// whole rows ends where the dimension before wraps or a row slice's canonical indices jump; a
// tensor-parallel column slice splits every piece into its runs of consecutive columns.
void write_flat_range(CheckpointAppender& file, const std::string& path, const Shape& canonical,
                      const ParamSlice& slice, const Shape& local, int64_t begin,
                      const float* values, int64_t n) {
  const int last = static_cast<int>(local.size()) - 1;
  if (last < 0) {
    if (n > 0) file.write(path, whole(canonical), values);
    return;
  }
  const int64_t row = local[last];
  const auto jump = [&](int axis, int64_t at) {  // canonical index of `at` not after at - 1's
    return slice.sharded() && slice.axis == axis && slice.index[at] != slice.index[at - 1] + 1;
  };
  Hyperslab block = whole(canonical);
  std::vector<int64_t> at(local.size());
  std::vector<float> pieces;
  for (int64_t i = begin; i < begin + n;) {
    int64_t rest = i;
    for (int a = last; a >= 0; --a) {
      at[a] = rest % local[a];
      rest /= local[a];
      block.start[a] = slice.sharded() && a == slice.axis ? slice.index[at[a]] : at[a];
      block.count[a] = 1;
    }
    const int64_t remaining = begin + n - i, first = at[last];
    int64_t rows = 1, length = std::min(remaining, row - first);
    if (last >= 1 && first == 0 && remaining >= row) {
      rows = std::min(remaining / row, local[last - 1] - at[last - 1]);
      for (int64_t k = 1; k < rows; ++k)
        if (jump(last - 1, at[last - 1] + k)) rows = k;
      block.count[last - 1] = rows;
    }
    for (int64_t c = first; c < first + length;) {
      int64_t run = 1;
      while (c + run < first + length && !jump(last, c + run)) ++run;
      block.start[last] = slice.sharded() && slice.axis == last ? slice.index[c] : c;
      block.count[last] = run;
      pieces.resize(static_cast<size_t>(rows * run));
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(pieces.data() + r * run, values + (i - begin) + r * row + (c - first),
                    sizeof(float) * run);
      file.write(path, block, pieces.data());
      c += run;
    }
    i += rows * length;
  }
}

const char* const kGroups[3] = {"/params/", "/optim/exp_avg/", "/optim/exp_avg_sq/"};

// This rank's value slices (whole replicated tensors on tensor-parallel rank 0) into the datasets
// `entry` names; the first of the group creates them unless `created`.
void write_slices(CheckpointAppender& file, const std::string& name,
                  const CheckpointSaver::Part::Entry& e, bool first_of_group, int groups) {
  std::vector<float> block;
  if (first_of_group) file.create(name, e.canonical_shape);
  for (const SliceRun& run : slice_runs(e.canonical_shape, e.slice))
    for (int g = 0; g < groups; ++g) {
      gather_run(*e.local[g], e.slice, run, block);
      file.write(kGroups[g] + name, run.block, block.data());
    }
}

void write_part(const std::string& temporary, const CheckpointSaver::Part& part) {
  for (const auto& [name, e] : part.tensors)
    for (int g = part.writes_values ? 0 : 1; g < 3; ++g)
      require_finite(kGroups[g] + name, *e.local[g]);
  CheckpointAppender file(temporary);
  for (const auto& [name, e] : part.tensors) {
    if (!e.slice.sharded() && !part.first_of_group) continue;  // replicated: tp rank 0 writes it
    if (!e.moment_shard) {
      if (!e.slice.sharded()) {
        const float* values[3] = {e.local[0]->data(), e.local[1]->data(), e.local[2]->data()};
        file.write_whole(name, e.canonical_shape, values);
      } else {
        write_slices(file, name, e, part.first_of_group, 3);
      }
      continue;
    }
    // ZeRO-1: replica 0 creates the datasets and writes the values; every replica (replica 0
    // first) adds its moment shards as hyperslabs.
    if (part.writes_values) {
      if (!e.slice.sharded()) {
        file.create(name, e.canonical_shape);
        file.write(kGroups[0] + name, whole(e.canonical_shape), e.local[0]->data());
      } else {
        write_slices(file, name, e, part.first_of_group, 1);
      }
    }
    for (int g = 1; g < 3; ++g)
      write_flat_range(file, kGroups[g] + name, e.canonical_shape, e.slice, e.local_shape,
                       e.shard_offset, e.local[g]->data(), e.local[g]->numel());
  }
  file.close();
}

// Token passing, commit by rank 0 (then pruning to `keep`), and the result on every rank: ""
// or the error. Collective over `comm` (ranks numbered as in the grid's world).
std::string write_and_commit(const ProcessGrid& grid, MPI_Comm comm, const std::string& dir,
                             const std::string& path, int64_t step, const std::string& config_ini,
                             const CheckpointSaver::Part& part, int keep) {
  const std::vector<int> order = writer_order(grid, part.moment_shards);
  const auto me = std::find(order.begin(), order.end(), grid.rank());
  const std::string temporary = temporary_checkpoint_name(path);  // rank 0's name
  Token token;
  if (grid.rank() == 0) {
    token.text = temporary;
    try {
      std::filesystem::create_directories(dir);
      create_checkpoint_file(temporary, config_ini, step);
    } catch (const std::exception& e) {
      token = {false, "rank 0 cannot create " + temporary + ": " + e.what()};
    }
  }
  if (me != order.end()) {
    if (me != order.begin()) token = receive_token(*(me - 1), comm);
    if (token.ok) {
      try {
        write_part(token.text, part);
      } catch (const std::exception& e) {
        token = {false, "rank " + std::to_string(grid.rank()) + " (stage " +
                            std::to_string(grid.stage()) + "): " + e.what() + " (writing " +
                            token.text + ")"};
      }
    }
    if (me + 1 != order.end())
      send_token(token, *(me + 1), comm);
    else if (grid.rank() != 0)
      send_token(token, 0, comm);
  }
  if (grid.rank() == 0) {
    if (order.size() > 1) token = receive_token(order.back(), comm);
    if (token.ok) {
      try {
        commit_checkpoint_file(temporary, path);
        prune_checkpoints(dir, keep, path);
      } catch (const std::exception& e) {
        token = {false, e.what()};
      }
    }
    if (!token.ok) {
      std::error_code ignored;
      std::filesystem::remove(temporary, ignored);
    }
  }
  // The save is complete for everyone only when rank 0 has renamed the file.
  std::string error = token.ok ? "" : token.text;
  if (grid.rank() == 0 && error.empty() && !token.ok) error = "failed";
  comm::broadcast_string(error, 0, comm, "broadcast checkpoint commit");
  return error;
}

}  // namespace

std::string save_checkpoint(const std::string& dir, int64_t step, const std::string& config_ini,
                            const ParamStore& store, const ProcessGrid& grid) {
  CheckpointSaver saver(grid, false);
  saver.start(dir, step, config_ini, store, 0);
  return saver.wait()->path;
}

// ---- CheckpointSaver ----

CheckpointSaver::CheckpointSaver(const ProcessGrid& grid, bool background)
    : grid_(grid), snapshot_(std::make_unique<Snapshot>()) {
  // Its own communicator: the background save's messages and broadcast never meet the
  // training's collectives (MPI orders collectives per communicator, not per thread).
  comm_ = comm::duplicate(grid.world(), "duplicate the checkpoint communicator");
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  hbool_t threadsafe = 0;
  H5is_library_threadsafe(&threadsafe);
  background_ = background && provided == MPI_THREAD_MULTIPLE && threadsafe;
}

CheckpointSaver::~CheckpointSaver() {
  if (thread_.joinable()) thread_.join();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm_);
}

void CheckpointSaver::start(const std::string& dir, int64_t step, const std::string& config_ini,
                            const ParamStore& store, int keep) {
  wait();  // one save at a time; its snapshot is reused
  const double t0 = MPI_Wtime();
  const std::string path = (std::filesystem::path(dir) / checkpoint_file_name(step)).string();
  // ZeRO-1: each replica writes its own moment shards (write_part), so every replica is a writer.
  const bool moment_shards = store.shard_count() > 1;
  const std::vector<int> order = writer_order(grid_, moment_shards);
  const bool writer = std::find(order.begin(), order.end(), grid_.rank()) != order.end();
  // This rank's part: a copy (a background save must not see the next steps' updates) or, when
  // the save is synchronous, the store itself. No rank assembles more than it holds.
  auto part = std::make_shared<Part>();
  part->first_of_group = grid_.tp_rank() == 0;
  part->writes_values = grid_.dp_rank() == 0;
  part->moment_shards = moment_shards;
  if (writer) {
    for (const auto& [name, p] : store.all()) {
      Part::Entry& entry = part->tensors[name];
      entry.canonical_shape = p.canonical_shape;
      entry.slice = p.slice;
      entry.moment_shard = p.moments_sharded();
      entry.shard_offset = p.shard_offset;
      entry.local_shape = p.value.shape();
      auto& copy = snapshot_->tensors[name];
      const Tensor* sources[3] = {&p.value, &p.exp_avg, &p.exp_avg_sq};
      for (int g = 0; g < 3; ++g) {
        // A device store is always copied: the writers read host memory.
        const bool on_host = sources[g]->device() == Device::Cpu;
        if ((background_ || !on_host) && (g > 0 || part->writes_values)) {
          if (copy[g].shape() != sources[g]->shape()) copy[g].reset(sources[g]->shape());
          sources[g]->copy_to_host(copy[g].data());
          entry.local[g] = &copy[g];
        } else {
          entry.local[g] = sources[g];  // synchronous, or a value this replica does not write
        }
      }
    }
  }
  result_ = Result{path, step, 0.0, MPI_Wtime() - t0};
  error_.clear();
  done_ = false;
  in_flight_ = true;
  auto job = [this, dir, path, step, config_ini, part, keep, t0] {
    error_ = write_and_commit(grid_, comm_, dir, path, step, config_ini, *part, keep);
    result_.seconds = MPI_Wtime() - t0;
    done_ = true;
  };
  if (background_) {
    thread_ = std::thread(job);
  } else {
    job();
  }
}

std::optional<CheckpointSaver::Result> CheckpointSaver::finish() {
  if (thread_.joinable()) thread_.join();
  in_flight_ = false;
  if (!error_.empty())
    throw std::runtime_error("cannot write checkpoint '" + result_.path + "': " + error_);
  return result_;
}

std::optional<CheckpointSaver::Result> CheckpointSaver::wait() {
  if (!in_flight_) return std::nullopt;
  return finish();
}

std::optional<CheckpointSaver::Result> CheckpointSaver::poll() {
  if (!in_flight_ || !done_) return std::nullopt;
  return finish();
}

int64_t load_checkpoint(const std::string& path, ParamStore& store, bool with_optimizer,
                        const ProcessGrid& grid, const std::string& source) {
  // Names and shapes first (metadata only): one list of every mismatch of the whole model,
  // assembled on rank 0 from every stage's speaker, before any tensor is read.
  const ShapeMap stored = read_checkpoint_shapes(path);
  const bool speaker = grid.dp_rank() == 0 && grid.tp_rank() == 0;
  std::ostringstream mine;  // "name\n" of this stage's tensors, then problems as "!line\n"
  if (speaker)
    for (const auto& [name, p] : store.all()) {
      mine << name << '\n';
      auto it = stored.find(name);
      if (it == stored.end())
        mine << "!missing " << name << " " << shape_string(p.canonical_shape) << '\n';
      else if (it->second != p.canonical_shape)
        mine << "!" << name << ": checkpoint " << shape_string(it->second) << ", model "
             << shape_string(p.canonical_shape) << '\n';
    }
  const std::vector<std::string> parts =
      comm::gather_strings(mine.str(), 0, grid.world(), "gather checkpoint tensor lists");
  std::string problems;
  int count = 0;
  if (grid.rank() == 0) {
    std::set<std::string> model;
    for (const std::string& part : parts) {
      std::istringstream lines(part);
      std::string line;
      while (std::getline(lines, line)) {
        if (line.empty()) continue;
        if (line[0] == '!') {
          problems += "\n  " + line.substr(1);
          ++count;
        } else {
          model.insert(line);
        }
      }
    }
    for (const auto& [name, shape] : stored)
      if (!model.count(name)) {
        problems += "\n  unexpected " + name + " " + shape_string(shape);
        ++count;
      }
  }
  comm::broadcast_string(problems, 0, grid.world(), "broadcast checkpoint mismatches");
  if (!problems.empty())
    throw UsageError(source + " does not match the model configuration" +
                     (grid.rank() == 0
                          ? " (" + std::to_string(count) + " mismatched tensors):" + problems +
                                "\nUse a checkpoint of this configuration, or build "
                                "the configuration stored in the checkpoint "
                                "(`hourglass info` prints it)."
                          : std::string(" (see rank 0's message)")));
  std::vector<std::string> names;
  for (const auto& [name, p] : store.all()) names.push_back(name);
  CheckpointData data = read_checkpoint_tensors(path, names, with_optimizer);
  import_params(store, data, with_optimizer, true, source);
  return data.step;
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::string> files;
  if (!std::filesystem::is_directory(dir)) return files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("step-", 0) == 0 && name.size() > 8 && name.substr(name.size() - 3) == ".h5")
      files.push_back(entry.path().string());
  }
  // Names carry zero-padded steps: lexicographic order is step order.
  std::sort(files.rbegin(), files.rend());
  return files;
}

std::string newest_valid_checkpoint(const std::string& dir) {
  for (const std::string& file : list_checkpoints(dir)) {
    const CheckpointCheck check = verify_checkpoint(file);
    if (check.valid) return file;
    std::fprintf(stderr, "hourglass: warning: skipping damaged checkpoint: %s\n",
                 check.problem.c_str());
    std::fflush(stderr);
  }
  return "";
}

void prune_checkpoints(const std::string& dir, int keep, const std::string& just_written) {
  std::error_code ignored;
  if (std::filesystem::is_directory(dir, ignored))
    for (const auto& entry : std::filesystem::directory_iterator(dir, ignored)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("step-", 0) == 0 && name.find(".h5.tmp-") != std::string::npos)
        std::filesystem::remove(entry.path(), ignored);
    }
  if (keep <= 0) return;
  // By step, but never the file just written: even if a later step's file sat in the directory
  // (the trainer refuses such a directory in setup), the newest save of this run stays.
  std::vector<std::string> files = list_checkpoints(dir);
  std::erase(files, just_written);
  if (!just_written.empty()) --keep;
  for (size_t i = std::max(keep, 0); i < files.size(); ++i) std::filesystem::remove(files[i]);
}

}  // namespace hg
