// Canonical HDF5 checkpoints (ARCHITECTURE.md §5). A file that cannot be read is bad input
// (UsageError, exit 2, naming the file); a save that fails is a run failure (std::runtime_error,
// exit 3) and leaves neither a partial checkpoint nor its temporary file behind.
#include "checkpoint/checkpoint_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "core/error.h"
#include "data/hdf5_util.h"
#include "data/sha256.h"

namespace hg {
namespace {

constexpr const char* kFormat = "hourglass-checkpoint";
constexpr int64_t kVersion = 1;
const char* const kGroups[3] = {"/params", "/optim/exp_avg", "/optim/exp_avg_sq"};

// Every tensor dataset carries `checksum` = int64[2]: the sum modulo 2^64 (stored as two's
// complement) of mix(i·2^32 + bits(x_i)) over its elements (i the row-major index in the whole
// tensor, bits the float's 32 bits, mix the splitmix64 finaliser, a bijection), and how many
// elements were summed. A sum of per-element terms composes: each writer of a hyperslab adds the
// terms of its elements, in any order, so tensor-parallel slices written by different ranks
// still give the whole tensor's checksum; a reader compares it with the sum over what it read.
// One flipped bit changes exactly one term (mix is a bijection), so it always changes the sum.
// Why not HDF5's Fletcher32 filter: it needs chunked datasets and its byte-wise checksum made
// saves 3-6x slower than writing the bytes (docs/checkpoints.md has the measurements).
constexpr const char* kChecksum = "checksum";

inline uint64_t mix(uint64_t z) {
  z ^= z >> 30;
  z *= 0xbf58476d1ce4e5b9ULL;
  z ^= z >> 27;
  z *= 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Σ mix over n consecutive elements whose first has index `first`.
uint64_t checksum_run(const float* values, int64_t n, uint64_t first) {
  uint64_t sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t k = 0; k < n; ++k) {
    uint32_t bits;
    std::memcpy(&bits, values + k, sizeof bits);
    sum += mix(((first + static_cast<uint64_t>(k)) << 32) | bits);
  }
  return sum;
}

// Checksum terms of `block` of a tensor of dimensions `dims` (values row-major within the block):
// one run per row of the block's last dimension.
uint64_t checksum_block(const std::vector<hsize_t>& dims, const Hyperslab& block,
                        const float* values) {
  const size_t rank = dims.size();
  if (rank == 0) return checksum_run(values, 1, 0);
  const int64_t row = block.count.back();
  int64_t rows = 1;
  for (size_t a = 0; a + 1 < rank; ++a) rows *= block.count[a];
  // Serial on purpose: a background save runs it beside the training's OpenMP threads (about
  // 8 GB/s on one core with AVX-512).
  uint64_t sum = 0;
  for (int64_t r = 0; r < rows; ++r) {
    // Canonical index of the row's first element: its coordinates in the block, offset by start.
    uint64_t rest = static_cast<uint64_t>(r), stride = dims[rank - 1];
    uint64_t index = static_cast<uint64_t>(block.start[rank - 1]);
    for (size_t a = rank - 1; a-- > 0;) {
      const uint64_t coordinate = rest % static_cast<uint64_t>(block.count[a]);
      rest /= static_cast<uint64_t>(block.count[a]);
      index += (coordinate + static_cast<uint64_t>(block.start[a])) * stride;
      stride *= dims[a];
    }
    sum += checksum_run(values + r * row, row, index);
  }
  return sum;
}

// ---- Reading ----

// `described` is how errors name the file, e.g. "checkpoint 'runs/x/step-00000010.h5'".
h5::Handle open_for_reading(const std::string& path, const std::string& described) {
  std::error_code ignored;
  require(std::filesystem::is_regular_file(path, ignored), described + " does not exist");
  // No file locks: a reader must not fail (or block a writer) on file systems without flock.
  h5::Handle access = h5::file_access(false);
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  require(is_hdf5 >= 0, described + " cannot be read; it is truncated or damaged (HDF5: " +
                            h5::last_error() + ")");
  require(is_hdf5 > 0, described + " is not an HDF5 file (or its first block is damaged)");
  h5::Handle file = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, access.get()));
  require(file.valid(), described + " is truncated or damaged (HDF5: " + h5::last_error() + ")");
  return file;
}

CheckpointData read_attributes(hid_t file, const std::string& described) {
  const auto format = h5::read_string_attribute(file, "format");
  require(format.has_value(),
          described + " has no 'format' attribute: it is not an hourglass checkpoint");
  require(*format == kFormat,
          described + " has format '" + *format + "', expected '" + kFormat + "'");
  const auto version = h5::read_int64_attribute(file, "version");
  require(version.has_value(), described + " has no integer 'version' attribute");
  require(*version == kVersion, described + " has version " + std::to_string(*version) +
                                    "; this build reads version " + std::to_string(kVersion));
  const auto config = h5::read_string_attribute(file, "config");
  require(config.has_value(), described + " has no 'config' attribute (the model's INI text)");
  const auto config_sha = h5::read_string_attribute(file, "config_sha256");
  require(!config_sha || *config_sha == sha256_hex(config->data(), config->size()),
          described + " is damaged: its 'config' attribute does not match its checksum");
  const auto step = h5::read_int64_attribute(file, "step");
  require(step.has_value() && *step >= 0, described + " has no valid 'step' attribute");
  CheckpointData data;
  data.config = *config;
  data.step = *step;
  return data;
}

// H5Lvisit callback: the path (below the visited group) of every dataset, in name order.
herr_t collect_dataset(hid_t group, const char* name, const H5L_info_t* link, void* names) {
  if (link->type != H5L_TYPE_HARD) return 0;
  const hid_t object = H5Oopen(group, name, H5P_DEFAULT);
  if (object < 0) return -1;
  if (H5Iget_type(object) == H5I_DATASET)
    static_cast<std::vector<std::string>*>(names)->push_back(name);
  H5Oclose(object);
  return 0;
}

std::vector<std::string> dataset_names(hid_t group, const std::string& where) {
  std::vector<std::string> names;
  require(H5Lvisit(group, H5_INDEX_NAME, H5_ITER_INC, collect_dataset, &names) >= 0,
          where + " cannot be listed; the file is damaged (HDF5: " + h5::last_error() + ")");
  return names;
}

h5::Handle open_group(hid_t file, const std::string& group, const std::string& described) {
  h5::Handle handle(H5Gopen2(file, group.c_str(), H5P_DEFAULT), H5Gclose);
  require(handle.valid(), described + " has no group '" + group + "'");
  return handle;
}

struct OpenDataset {
  h5::Handle dataset, space;
  Shape shape;
  bool checksummed = false;       // by our attribute or by HDF5's Fletcher32 filter
  std::vector<int64_t> checksum;  // the attribute (sum, elements) when present
};

OpenDataset open_dataset(hid_t group, const std::string& name, const std::string& where) {
  OpenDataset d;
  d.dataset = h5::dataset(H5Dopen2(group, name.c_str(), H5P_DEFAULT));
  h5::Handle type = h5::type(d.dataset.valid() ? H5Dget_type(d.dataset.get()) : H5I_INVALID_HID);
  d.space = h5::space(d.dataset.valid() ? H5Dget_space(d.dataset.get()) : H5I_INVALID_HID);
  require(type.valid() && d.space.valid(),
          where + name + " cannot be opened; the file is damaged (HDF5: " + h5::last_error() + ")");
  require(H5Tget_class(type.get()) == H5T_FLOAT, where + name + " is not a floating-point dataset");
  const int rank = H5Sget_simple_extent_ndims(d.space.get());
  require(rank >= 0, where + name + " has an unreadable shape");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(d.space.get(), dims.data(), nullptr);
  h5::Handle create = h5::plist(H5Dget_create_plist(d.dataset.get()));
  // An extent beyond the data in the file would be allocated in full (fuzz_checkpoint).
  const std::string missing = h5::missing_data(d.dataset.get());
  require(missing.empty(), where + name + missing + ": the file is truncated or damaged");
  d.shape.assign(dims.begin(), dims.end());
  unsigned flags = 0, config = 0;
  size_t values = 0;
  d.checksummed =
      create.valid() && H5Pget_filter_by_id2(create.get(), H5Z_FILTER_FLETCHER32, &flags, &values,
                                             nullptr, 0, nullptr, &config) >= 0;
  H5Eclear2(H5E_DEFAULT);
  if (auto sum = h5::read_int64_list_attribute(d.dataset.get(), kChecksum)) {
    require(sum->size() == 2, where + name + " has a malformed checksum attribute");
    d.checksum = *sum;
    d.checksummed = true;
  }
  return d;
}

// Reads the whole dataset and verifies its checksum when it has one.
void read_into(const OpenDataset& d, const std::string& what, float* out) {
  const int64_t n = shape_numel(d.shape);
  if (n > 0 && H5Dread(d.dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
    const std::string hdf5 = h5::last_error();
    throw UsageError(what +
                     (d.checksummed ? " fails its checksum or cannot be read" : " cannot be read") +
                     ": the file is truncated or damaged (HDF5: " + hdf5 + ")");
  }
  if (d.checksum.empty()) return;
  require(d.checksum[1] == n, what + " is incomplete: " + std::to_string(d.checksum[1]) +
                                  " of its " + std::to_string(n) + " elements were written");
  const uint64_t sum =
      n > 0 ? checksum_block({static_cast<hsize_t>(n)}, Hyperslab{{0}, {n}}, out) : 0;
  require(sum == static_cast<uint64_t>(d.checksum[0]),
          what + " fails its checksum: the file is damaged (its bytes changed after the save)");
}

Tensor read_dataset(hid_t group, const std::string& name, const std::string& where) {
  OpenDataset d = open_dataset(group, name, where);
  Tensor tensor(d.shape);
  read_into(d, where + name, tensor.data());
  return tensor;
}

// Every dataset below `group`, keyed by its path relative to the group.
TensorMap read_group(hid_t file, const std::string& group, const std::string& described) {
  h5::Handle handle = open_group(file, group, described);
  const std::string where = described + ": " + group + "/";
  TensorMap tensors;
  for (const std::string& name : dataset_names(handle.get(), described + ": group '" + group + "'"))
    tensors.emplace(name, read_dataset(handle.get(), name, where));
  return tensors;
}

bool has_optimizer(hid_t file) { return H5Lexists(file, "optim", H5P_DEFAULT) > 0; }

// ---- Writing ----

h5::Handle create_dataset(hid_t file, const std::string& path, const Shape& shape,
                          hid_t link_create) {
  const std::vector<hsize_t> dims(shape.begin(), shape.end());
  h5::Handle space = h5::space(h5::check_id(
      dims.empty() ? H5Screate(H5S_SCALAR)
                   : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
      "dataspace of " + path));
  h5::Handle create = h5::plist(h5::check_id(H5Pcreate(H5P_DATASET_CREATE), "dataset plist"));
  // Contiguous: a save writes each tensor's bytes once, straight from memory. Every element is
  // written before the file is renamed, so no fill pass either.
  h5::check(H5Pset_fill_time(create.get(), H5D_FILL_TIME_NEVER), "fill time of " + path);
  return h5::dataset(h5::check_id(H5Dcreate2(file, path.c_str(), H5T_IEEE_F32LE, space.get(),
                                             link_create, create.get(), H5P_DEFAULT),
                                  "create " + path));
}

// Writes the block; returns its checksum terms.
uint64_t write_block(hid_t file, const std::string& path, const Hyperslab& block,
                     const float* values) {
  h5::Handle dataset =
      h5::dataset(h5::check_id(H5Dopen2(file, path.c_str(), H5P_DEFAULT), "open " + path));
  h5::Handle file_space =
      h5::space(h5::check_id(H5Dget_space(dataset.get()), "dataspace of " + path));
  const int rank = H5Sget_simple_extent_ndims(file_space.get());
  if (rank != static_cast<int>(block.start.size()) || rank != static_cast<int>(block.count.size()))
    throw std::runtime_error("write " + path + ": block of rank " +
                             std::to_string(block.start.size()) + " into a dataset of rank " +
                             std::to_string(rank));
  int64_t n = 1;
  for (int64_t c : block.count) n *= c;
  if (n == 0) return 0;
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(file_space.get(), dims.data(), nullptr);
  if (rank == 0) {
    h5::check(H5Dwrite(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values),
              "write " + path);
  } else {
    const std::vector<hsize_t> start(block.start.begin(), block.start.end());
    const std::vector<hsize_t> count(block.count.begin(), block.count.end());
    h5::check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr,
                                  count.data(), nullptr),
              "select block of " + path);
    h5::Handle memory =
        h5::space(h5::check_id(H5Screate_simple(rank, count.data(), nullptr), "memory space"));
    h5::check(H5Dwrite(dataset.get(), H5T_NATIVE_FLOAT, memory.get(), file_space.get(), H5P_DEFAULT,
                       values),
              "write " + path);
  }
  return checksum_block(dims, block, values);
}

// Adds (sum, elements) to the checksum attribute of dataset `path` (created when absent). The
// writers of one file take turns, so there is no race.
void add_to_checksum(hid_t file, const std::string& path, uint64_t sum, int64_t elements) {
  h5::Handle dataset =
      h5::dataset(h5::check_id(H5Dopen2(file, path.c_str(), H5P_DEFAULT), "open " + path));
  std::vector<int64_t> stored = {0, 0};
  if (H5Aexists(dataset.get(), kChecksum) > 0) {
    stored =
        h5::read_int64_list_attribute(dataset.get(), kChecksum).value_or(std::vector<int64_t>{});
    if (stored.size() != 2) throw std::runtime_error(path + ": malformed checksum attribute");
  }
  stored[0] = static_cast<int64_t>(static_cast<uint64_t>(stored[0]) + sum);
  stored[1] += elements;
  h5::write_int64_list_attribute(dataset.get(), kChecksum, stored);
}

// File access for writers: no file locks (see open_for_reading), the HDF5 1.10 format (metadata
// with checksums), and a strong close that fails instead of leaving the file open behind a
// forgotten handle.
h5::Handle writer_access() {
  h5::Handle access = h5::file_access(false);
  h5::check(H5Pset_libver_bounds(access.get(), H5F_LIBVER_V110, H5F_LIBVER_V110), "format version");
  h5::check(H5Pset_fclose_degree(access.get(), H5F_CLOSE_STRONG), "close degree");
  return access;
}

h5::Handle intermediate_groups() {
  h5::Handle link_create = h5::plist(h5::check_id(H5Pcreate(H5P_LINK_CREATE), "link plist"));
  // Names contain '/': their groups are created on the way.
  h5::check(H5Pset_create_intermediate_group(link_create.get(), 1), "intermediate groups");
  return link_create;
}

void sync_to_disk(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  const bool synced = fd >= 0 && ::fsync(fd) == 0;
  const std::string reason = synced ? "" : std::strerror(errno);
  if (fd >= 0) ::close(fd);
  // A directory fsync is best effort: some file systems refuse it, and the data itself is safe.
  if (!synced && !directory) throw std::runtime_error("fsync " + path + ": " + reason);
}

// Checks the moments against the parameters (write_checkpoint's input).
void check_moments(const char* group, const TensorMap& moments, const TensorMap& params) {
  if (moments.empty()) return;
  for (const auto& [name, param] : params) {
    auto moment = moments.find(name);
    if (moment == moments.end() || moment->second.shape() != param.shape())
      throw std::runtime_error(std::string(group) + "/" + name +
                               " is missing or its shape differs from " +
                               shape_string(param.shape()));
  }
  if (moments.size() != params.size())
    throw std::runtime_error(std::string(group) + " holds tensors that are not parameters");
}

}  // namespace

// ---- Writing ----

Hyperslab whole(const Shape& shape) {
  Hyperslab block;
  block.start.assign(shape.size(), 0);
  block.count.assign(shape.begin(), shape.end());
  return block;
}

std::string temporary_checkpoint_name(const std::string& path) {
  return path + ".tmp-" + std::to_string(::getpid());
}

void create_checkpoint_file(const std::string& path, const std::string& config, int64_t step) {
  h5::QuietErrors quiet;
  h5::Handle access = writer_access();
  const hid_t file = h5::check_id(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access.get()),
                                  "create file " + path);
  try {
    h5::Handle link_create = intermediate_groups();
    for (const char* group : kGroups)
      h5::Handle(h5::check_id(H5Gcreate2(file, group, link_create.get(), H5P_DEFAULT, H5P_DEFAULT),
                              std::string("create ") + group),
                 H5Gclose);
    h5::write_string_attribute(file, "format", kFormat);
    h5::write_int64_attribute(file, "version", kVersion);
    h5::write_string_attribute(file, "config", config);
    h5::write_string_attribute(file, "config_sha256", sha256_hex(config.data(), config.size()));
    h5::write_int64_attribute(file, "step", step);
  } catch (...) {
    H5Fclose(file);
    throw;
  }
  h5::check(H5Fclose(file), "close " + path);
}

CheckpointAppender::CheckpointAppender(const std::string& path) : path_(path) {
  h5::QuietErrors quiet;
  h5::Handle access = writer_access();
  file_ = h5::check_id(H5Fopen(path.c_str(), H5F_ACC_RDWR, access.get()), "open " + path);
  link_create_ = intermediate_groups().release();
}

CheckpointAppender::~CheckpointAppender() {
  if (link_create_ >= 0) H5Pclose(link_create_);
  if (file_ >= 0) {
    h5::QuietErrors quiet;
    H5Fclose(file_);
  }
}

void CheckpointAppender::create(const std::string& name, const Shape& shape) {
  h5::QuietErrors quiet;
  for (const char* group : kGroups)
    create_dataset(file_, std::string(group) + "/" + name, shape, link_create_);
}

void CheckpointAppender::write_whole(const std::string& name, const Shape& shape,
                                     const float* const values[3]) {
  h5::QuietErrors quiet;
  const std::vector<hsize_t> dims(shape.begin(), shape.end());
  const int64_t n = shape_numel(shape);
  for (int g = 0; g < 3; ++g) {
    const std::string path = std::string(kGroups[g]) + "/" + name;
    h5::Handle dataset = create_dataset(file_, path, shape, link_create_);
    if (n > 0)
      h5::check(H5Dwrite(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values[g]),
                "write " + path);
    const uint64_t sum = n > 0 ? checksum_block(dims, whole(shape), values[g]) : 0;
    h5::write_int64_list_attribute(dataset.get(), kChecksum, {static_cast<int64_t>(sum), n});
  }
}

void CheckpointAppender::write(const std::string& path, const Hyperslab& block,
                               const float* values) {
  h5::QuietErrors quiet;
  const uint64_t sum = write_block(file_, path, block, values);
  int64_t elements = 1;
  for (int64_t c : block.count) elements *= c;
  auto& total = checksums_[path];
  total.first += sum;
  total.second += elements;
}

void CheckpointAppender::close() {
  h5::QuietErrors quiet;
  // One attribute write per dataset, after its data: HDF5 rewrites an attribute by deleting and
  // recreating it, which costs more than the checksum itself when done per block.
  for (const auto& [path, total] : checksums_)
    add_to_checksum(file_, path, total.first, total.second);
  checksums_.clear();
  H5Pclose(link_create_);
  link_create_ = H5I_INVALID_HID;
  const hid_t file = file_;
  file_ = H5I_INVALID_HID;
  h5::check(H5Fflush(file, H5F_SCOPE_GLOBAL), "flush " + path_);
  h5::check(H5Fclose(file), "close " + path_);
}

void commit_checkpoint_file(const std::string& temporary, const std::string& path) {
  sync_to_disk(temporary, false);
  if (std::rename(temporary.c_str(), path.c_str()) != 0)
    throw std::runtime_error("rename " + temporary + ": " + std::strerror(errno));
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  sync_to_disk(parent.empty() ? "." : parent.string(), true);
}

void write_checkpoint(const std::string& path, const CheckpointData& data) {
  const std::string temporary = temporary_checkpoint_name(path);
  try {
    check_moments("/optim/exp_avg", data.exp_avg, data.params);
    check_moments("/optim/exp_avg_sq", data.exp_avg_sq, data.params);
    create_checkpoint_file(temporary, data.config, data.step);
    CheckpointAppender file(temporary);
    for (const auto& [name, param] : data.params) {
      // Moments not stored: zeros of the parameters' shapes (§5, before the first update).
      const Tensor zeros =
          data.exp_avg.empty() || data.exp_avg_sq.empty() ? Tensor(param.shape()) : Tensor();
      const float* values[3] = {
          param.data(), data.exp_avg.empty() ? zeros.data() : data.exp_avg.at(name).data(),
          data.exp_avg_sq.empty() ? zeros.data() : data.exp_avg_sq.at(name).data()};
      file.write_whole(name, param.shape(), values);
    }
    file.close();
    commit_checkpoint_file(temporary, path);
  } catch (const std::exception& e) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    throw std::runtime_error("cannot write checkpoint '" + path + "': " + e.what());
  }
}

// ---- Reading ----

CheckpointData read_checkpoint(const std::string& path, bool with_optimizer) {
  h5::QuietErrors quiet;
  const std::string described = "checkpoint '" + path + "'";
  h5::Handle file = open_for_reading(path, described);
  CheckpointData data = read_attributes(file.get(), described);
  data.params = read_group(file.get(), "/params", described);
  if (with_optimizer && has_optimizer(file.get())) {
    data.exp_avg = read_group(file.get(), "/optim/exp_avg", described);
    data.exp_avg_sq = read_group(file.get(), "/optim/exp_avg_sq", described);
  }
  return data;
}

CheckpointData read_checkpoint_header(const std::string& path) {
  h5::QuietErrors quiet;
  const std::string described = "checkpoint '" + path + "'";
  h5::Handle file = open_for_reading(path, described);
  return read_attributes(file.get(), described);
}

ShapeMap read_checkpoint_shapes(const std::string& path) {
  h5::QuietErrors quiet;
  const std::string described = "checkpoint '" + path + "'";
  h5::Handle file = open_for_reading(path, described);
  h5::Handle params = open_group(file.get(), "/params", described);
  ShapeMap shapes;
  for (const std::string& name : dataset_names(params.get(), described + ": group '/params'"))
    shapes[name] = open_dataset(params.get(), name, described + ": /params/").shape;
  return shapes;
}

CheckpointData read_checkpoint_tensors(const std::string& path,
                                       const std::vector<std::string>& names, bool with_optimizer) {
  h5::QuietErrors quiet;
  const std::string described = "checkpoint '" + path + "'";
  h5::Handle file = open_for_reading(path, described);
  CheckpointData data = read_attributes(file.get(), described);
  with_optimizer = with_optimizer && has_optimizer(file.get());
  TensorMap* maps[3] = {&data.params, &data.exp_avg, &data.exp_avg_sq};
  for (int g = 0; g < (with_optimizer ? 3 : 1); ++g) {
    h5::Handle group = open_group(file.get(), kGroups[g], described);
    const std::string where = described + ": " + kGroups[g] + "/";
    for (const std::string& name : names)
      if (H5Lexists(group.get(), name.c_str(), H5P_DEFAULT) > 0)
        maps[g]->emplace(name, read_dataset(group.get(), name, where));
    H5Eclear2(H5E_DEFAULT);
  }
  return data;
}

CheckpointCheck verify_checkpoint(const std::string& path) {
  h5::QuietErrors quiet;
  CheckpointCheck check;
  const std::string described = "checkpoint '" + path + "'";
  try {
    h5::Handle file = open_for_reading(path, described);
    CheckpointData header = read_attributes(file.get(), described);
    check.step = header.step;
    check.config = header.config;
    check.config_checksum = h5::read_string_attribute(file.get(), "config_sha256").has_value();
    ShapeMap shapes[3];
    std::vector<float> buffer;
    for (int g = 0; g < 3; ++g) {
      if (g > 0 && !has_optimizer(file.get())) break;
      h5::Handle group = open_group(file.get(), kGroups[g], described);
      const std::string where = described + ": " + kGroups[g] + "/";
      for (const std::string& name : dataset_names(group.get(), where)) {
        OpenDataset d = open_dataset(group.get(), name, where);
        buffer.resize(static_cast<size_t>(shape_numel(d.shape)));
        read_into(d, where + name, buffer.data());
        // The trainer never saves non-finite values: such a file is not a resumable checkpoint.
        for (size_t i = 0; i < buffer.size(); ++i)
          if (!std::isfinite(buffer[i]))
            throw UsageError(where + name + " holds a non-finite value (" +
                             std::to_string(buffer[i]) + ") at element " + std::to_string(i));
        shapes[g][name] = d.shape;
        if (g == 0) check.params[name] = d.shape;
        ++check.tensors;
        check.checksummed += d.checksummed ? 1 : 0;
        check.bytes += static_cast<int64_t>(buffer.size() * sizeof(float));
      }
    }
    for (int g = 1; g < 3; ++g)
      require(shapes[g].empty() || shapes[g] == shapes[0],
              described + ": " + kGroups[g] +
                  " does not hold one tensor of the same shape per parameter");
    require(!shapes[0].empty(), described + " holds no parameters");
    check.valid = true;
  } catch (const UsageError& e) {
    check.problem = e.what();
  }
  return check;
}

std::string checkpoint_file_name(int64_t step) {
  char name[40];
  std::snprintf(name, sizeof name, "step-%08lld.h5", static_cast<long long>(step));
  return name;
}

TensorMap read_tensor_group(const std::string& path, const std::string& group) {
  h5::QuietErrors quiet;
  const std::string described = "HDF5 file '" + path + "'";
  h5::Handle file = open_for_reading(path, described);
  return read_group(file.get(), group, described);
}

}  // namespace hg
