#include "trainer/checkpoint_store.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>
#include <stdexcept>

#include "core/error.h"
#include "parallel/comm.h"
#include "trainer/checkpoint.h"
#include "trainer/checkpoint_io.h"

namespace hg {
namespace {

constexpr int kTagToken = 30011;

// The token a writer passes to the next: ok, and the temporary file's path (or, after a
// failure, the message).
struct Token {
  bool ok = true;
  std::string text;
};

void send_token(const Token& token, int to, MPI_Comm world) {
  std::string message(1, token.ok ? '1' : '0');
  message += token.text;
  MPI_Send(message.data(), static_cast<int>(message.size()), MPI_CHAR, to, kTagToken, world);
}

Token receive_token(int from, MPI_Comm world) {
  MPI_Status status;
  MPI_Probe(from, kTagToken, world, &status);
  int length = 0;
  MPI_Get_count(&status, MPI_CHAR, &length);
  std::string message(static_cast<size_t>(length), '\0');
  MPI_Recv(message.data(), length, MPI_CHAR, from, kTagToken, world, MPI_STATUS_IGNORE);
  return {!message.empty() && message[0] == '1', message.substr(std::min<size_t>(1, message.size()))};
}

// A string from `root` to every rank of `comm`.
void broadcast_string(std::string& text, int root, MPI_Comm comm) {
  int64_t length = static_cast<int64_t>(text.size());
  comm::broadcast(&length, sizeof length, root, comm);
  text.resize(static_cast<size_t>(length));
  if (length > 0) comm::broadcast(text.data(), length, root, comm);
}

// Every rank's string, on `root` (in rank order; empty elsewhere).
std::vector<std::string> gather_strings(const std::string& mine, int root, MPI_Comm comm) {
  int size = 0, rank = 0;
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &rank);
  int length = static_cast<int>(mine.size());
  std::vector<int> lengths(rank == root ? size : 0), offsets(lengths.size());
  MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, root, comm);
  std::string all;
  if (rank == root) {
    int total = 0;
    for (int r = 0; r < size; ++r) {
      offsets[r] = total;
      total += lengths[r];
    }
    all.resize(static_cast<size_t>(total));
  }
  MPI_Gatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR,
              root, comm);
  std::vector<std::string> out;
  for (size_t r = 0; r < lengths.size(); ++r) out.push_back(all.substr(offsets[r], lengths[r]));
  return out;
}

// The writers in turn: replica 0's ranks, stage by stage, tensor-parallel rank by rank.
std::vector<int> writer_order(const ProcessGrid& grid) {
  std::vector<int> order;
  for (int p = 0; p < grid.pp(); ++p)
    for (int t = 0; t < grid.tp(); ++t) order.push_back(grid.rank_of(0, p, t));
  return order;
}

// This rank's part of the file. With tp = 1 the store holds full canonical tensors, written
// straight from it (no copy). With tp > 1, export_params assembles the stage's full tensors on
// tensor-parallel rank 0 (trainer/checkpoint.cpp), which writes them; CheckpointAppender::write
// takes hyperslab blocks, so slices can be written by their own ranks instead.
struct WriterPart {
  struct Tensor3 {
    const Tensor* value;
    const Tensor* exp_avg;
    const Tensor* exp_avg_sq;
  };
  std::map<std::string, Tensor3> tensors;
  CheckpointData assembled;  // owns the tensors when tp > 1
};

// The trainer never saves non-finite weights or moments (§8 exit 3 comes first); this is the
// last line of defence, and costs one pass over memory next to the write.
void require_finite(const std::string& name, const Tensor& t) {
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(t.data()[i]))
      throw std::runtime_error("refusing to save " + name + ": element " + std::to_string(i) +
                               " is " + std::to_string(t.data()[i]));
}

void write_part(const std::string& temporary, const WriterPart& part) {
  for (const auto& [name, t] : part.tensors) {
    require_finite("/params/" + name, *t.value);
    require_finite("/optim/exp_avg/" + name, *t.exp_avg);
    require_finite("/optim/exp_avg_sq/" + name, *t.exp_avg_sq);
  }
  CheckpointAppender file(temporary);
  for (const auto& [name, t] : part.tensors) {
    file.create(name, t.value->shape());
    const Hyperslab block = whole(t.value->shape());
    file.write("/params/" + name, block, t.value->data());
    file.write("/optim/exp_avg/" + name, block, t.exp_avg->data());
    file.write("/optim/exp_avg_sq/" + name, block, t.exp_avg_sq->data());
  }
  file.close();
}

}  // namespace

std::string save_checkpoint(const std::string& dir, int64_t step, const std::string& config_ini,
                            const ParamStore& store, const ProcessGrid& grid) {
  const std::string path = (std::filesystem::path(dir) / checkpoint_file_name(step)).string();
  const std::vector<int> order = writer_order(grid);
  const auto me = std::find(order.begin(), order.end(), grid.rank());
  const bool writer = me != order.end();

  WriterPart part;
  if (writer && grid.tp() == 1) {
    for (const auto& [name, p] : store.all()) part.tensors[name] = {&p.value, &p.exp_avg, &p.exp_avg_sq};
  } else if (grid.dp_rank() == 0 && grid.tp() > 1) {
    export_params(store, part.assembled, true);  // collective over the stage's tensor-parallel group
    if (grid.tp_rank() == 0)
      for (const auto& [name, t] : part.assembled.params)
        part.tensors[name] = {&t, &part.assembled.exp_avg.at(name), &part.assembled.exp_avg_sq.at(name)};
  }

  Token token;
  if (grid.rank() == 0) {
    token.text = temporary_checkpoint_name(path);
    try {
      std::filesystem::create_directories(dir);
      create_checkpoint_file(token.text, config_ini, step);
    } catch (const std::exception& e) {
      token = {false, "rank 0 cannot create " + token.text + ": " + e.what()};
    }
  }
  if (writer) {
    if (me != order.begin()) token = receive_token(*(me - 1), grid.world());
    if (token.ok) {
      try {
        write_part(token.text, part);
      } catch (const std::exception& e) {
        token = {false, "rank " + std::to_string(grid.rank()) + " (stage " +
                            std::to_string(grid.stage()) + "): " + e.what() + " (writing " +
                            token.text + ")"};
      }
    }
    if (me + 1 != order.end()) send_token(token, *(me + 1), grid.world());
    else if (grid.rank() != 0) send_token(token, 0, grid.world());
  }
  if (grid.rank() == 0) {
    if (order.size() > 1) token = receive_token(order.back(), grid.world());
    const std::string temporary = temporary_checkpoint_name(path);
    if (token.ok) {
      try {
        commit_checkpoint_file(temporary, path);
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
  int ok = token.ok ? 1 : 0;
  comm::broadcast(&ok, sizeof ok, 0, grid.world());
  std::string message = ok ? "" : token.text;
  broadcast_string(message, 0, grid.world());
  if (!ok) throw std::runtime_error("cannot write checkpoint '" + path + "': " + message);
  return path;
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
        mine << "!missing " << name << " " << shape_string(p.value.shape()) << '\n';
      else if (grid.tp() == 1 && it->second != p.value.shape())  // tp > 1: import_params compares
        mine << "!" << name << ": checkpoint " << shape_string(it->second) << ", model "
             << shape_string(p.value.shape()) << '\n';
    }
  const std::vector<std::string> parts = gather_strings(mine.str(), 0, grid.world());
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
  broadcast_string(problems, 0, grid.world());
  if (!problems.empty())
    throw UsageError(source + " does not match the model configuration" +
                     (grid.rank() == 0 ? " (" + std::to_string(count) + " mismatched tensors):" +
                                             problems +
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

void prune_checkpoints(const std::string& dir, int keep) {
  std::error_code ignored;
  if (std::filesystem::is_directory(dir, ignored))
    for (const auto& entry : std::filesystem::directory_iterator(dir, ignored)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("step-", 0) == 0 && name.find(".h5.tmp-") != std::string::npos)
        std::filesystem::remove(entry.path(), ignored);
    }
  if (keep <= 0) return;
  auto files = list_checkpoints(dir);
  for (size_t i = keep; i < files.size(); ++i) std::filesystem::remove(files[i]);
}

}  // namespace hg
