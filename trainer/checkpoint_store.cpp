#include "trainer/checkpoint_store.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "parallel/comm.h"
#include "trainer/checkpoint.h"
#include "trainer/checkpoint_io.h"

namespace hg {
namespace {

constexpr int kTagHeader = 30001, kTagNames = 30002, kTagData = 30003;

// Parameters of a stage as one name list ("name rank d0 d1 ...\n" per tensor) and one float
// buffer (values, then exp_avg, then exp_avg_sq, tensor by tensor).
struct Packed {
  std::string names;
  std::vector<float> data;
};

Packed pack(const ParamStore& store) {
  Packed p;
  std::ostringstream names;
  for (const auto& [name, param] : store.all()) {
    names << name << ' ' << param.value.rank();
    for (int64_t s : param.value.shape()) names << ' ' << s;
    names << '\n';
    for (const Tensor* t : {&param.value, &param.exp_avg, &param.exp_avg_sq})
      p.data.insert(p.data.end(), t->data(), t->data() + t->numel());
  }
  p.names = names.str();
  return p;
}

void unpack(const Packed& p, CheckpointData& out) {
  std::istringstream lines(p.names);
  std::string name;
  int rank = 0;
  size_t at = 0;
  while (lines >> name >> rank) {
    Shape shape(rank);
    for (auto& s : shape) lines >> s;
    for (TensorMap* m : {&out.params, &out.exp_avg, &out.exp_avg_sq}) {
      Tensor t(shape);
      std::memcpy(t.data(), p.data.data() + at, sizeof(float) * t.numel());
      at += t.numel();
      (*m)[name] = std::move(t);
    }
  }
}

}  // namespace

std::string save_checkpoint(const std::string& dir, int64_t step, const std::string& config_ini,
                            const ParamStore& store, const ProcessGrid& grid) {
  const bool speaker = grid.dp_rank() == 0 && grid.tp_rank() == 0;
  if (grid.rank() != 0) {
    if (speaker) {
      Packed p = pack(store);
      int64_t sizes[2] = {static_cast<int64_t>(p.names.size()), static_cast<int64_t>(p.data.size())};
      MPI_Send(sizes, 2, MPI_INT64_T, 0, kTagHeader, grid.world());
      MPI_Send(p.names.data(), static_cast<int>(sizes[0]), MPI_CHAR, 0, kTagNames, grid.world());
      comm::Request r = comm::isend(p.data.data(), sizes[1], 0, kTagData, grid.world(),
                                    "send checkpoint part");
      comm::wait(r);
    }
    comm::barrier(grid.world());  // the save is complete only when rank 0 has renamed the file
    return "";
  }
  CheckpointData data;
  data.config = config_ini;
  data.step = step;
  export_params(store, data, true);
  for (int p = 1; p < grid.pp(); ++p) {
    const int src = grid.rank_of(0, p, 0);
    int64_t sizes[2];
    MPI_Recv(sizes, 2, MPI_INT64_T, src, kTagHeader, grid.world(), MPI_STATUS_IGNORE);
    Packed part;
    part.names.resize(sizes[0]);
    part.data.resize(sizes[1]);
    MPI_Recv(part.names.data(), static_cast<int>(sizes[0]), MPI_CHAR, src, kTagNames, grid.world(),
             MPI_STATUS_IGNORE);
    comm::Request r = comm::irecv(part.data.data(), sizes[1], src, kTagData, grid.world(),
                                  "receive checkpoint part");
    comm::wait(r);
    unpack(part, data);
  }
  std::filesystem::create_directories(dir);
  std::string path = (std::filesystem::path(dir) / checkpoint_file_name(step)).string();
  write_checkpoint(path, data);
  comm::barrier(grid.world());
  return path;
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

void prune_checkpoints(const std::string& dir, int keep) {
  if (keep <= 0) return;
  auto files = list_checkpoints(dir);
  for (size_t i = keep; i < files.size(); ++i) std::filesystem::remove(files[i]);
}

}  // namespace hg
