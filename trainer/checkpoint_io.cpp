// Canonical HDF5 checkpoints (ARCHITECTURE.md §5). A file that cannot be read is bad input
// (UsageError, exit 2, naming the file); a save that fails is a run failure (std::runtime_error,
// exit 3) and leaves neither a partial checkpoint nor its temporary file behind.
#include "trainer/checkpoint_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "core/error.h"
#include "data/hdf5_util.h"

namespace hg {
namespace {

constexpr const char* kFormat = "hourglass-checkpoint";
constexpr int64_t kVersion = 1;

// ---- Reading ----

// `described` is how errors name the file, e.g. "checkpoint 'runs/x/step-00000010.h5'".
h5::Handle open_for_reading(const std::string& path, const std::string& described) {
  std::error_code ignored;
  require(std::filesystem::is_regular_file(path, ignored), described + " does not exist");
  // No file locks: a reader must not fail (or block a writer) on file systems without flock.
  h5::Handle access = h5::file_access(false);
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  require(is_hdf5 >= 0, described + " cannot be read (" + h5::last_error() + ")");
  require(is_hdf5 > 0, described + " is not an HDF5 file");
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

Tensor read_dataset(hid_t group, const std::string& name, const std::string& where) {
  h5::Handle dataset = h5::dataset(H5Dopen2(group, name.c_str(), H5P_DEFAULT));
  h5::Handle type = h5::type(dataset.valid() ? H5Dget_type(dataset.get()) : H5I_INVALID_HID);
  h5::Handle space = h5::space(dataset.valid() ? H5Dget_space(dataset.get()) : H5I_INVALID_HID);
  require(type.valid() && space.valid(),
          where + name + " cannot be opened (HDF5: " + h5::last_error() + ")");
  require(H5Tget_class(type.get()) == H5T_FLOAT, where + name + " is not a floating-point dataset");
  const int rank = H5Sget_simple_extent_ndims(space.get());
  require(rank >= 0, where + name + " has an unreadable shape");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  Tensor tensor(Shape(dims.begin(), dims.end()));
  require(tensor.empty() || H5Dread(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                    tensor.data()) >= 0,
          where + name +
              " cannot be read; the file is truncated or damaged (HDF5: " + h5::last_error() + ")");
  return tensor;
}

// Every dataset below `group`, keyed by its path relative to the group.
TensorMap read_group(hid_t file, const std::string& group, const std::string& described) {
  h5::Handle handle(H5Gopen2(file, group.c_str(), H5P_DEFAULT), H5Gclose);
  require(handle.valid(), described + " has no group '" + group + "'");
  std::vector<std::string> names;
  require(H5Lvisit(handle.get(), H5_INDEX_NAME, H5_ITER_INC, collect_dataset, &names) >= 0,
          described + ": group '" + group + "' cannot be listed (HDF5: " + h5::last_error() + ")");
  TensorMap tensors;
  const std::string where = described + ": " + group + "/";
  for (const std::string& name : names)
    tensors.emplace(name, read_dataset(handle.get(), name, where));
  return tensors;
}

// ---- Writing ----

void write_tensor(hid_t file, const std::string& path, const Tensor& tensor, hid_t link_create) {
  const std::vector<hsize_t> dims(tensor.shape().begin(), tensor.shape().end());
  h5::Handle space = h5::space(h5::check_id(
      dims.empty() ? H5Screate(H5S_SCALAR)
                   : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
      "dataspace of " + path));
  h5::Handle dataset =
      h5::dataset(h5::check_id(H5Dcreate2(file, path.c_str(), H5T_IEEE_F32LE, space.get(),
                                          link_create, H5P_DEFAULT, H5P_DEFAULT),
                               "create " + path));
  if (!tensor.empty())
    h5::check(
        H5Dwrite(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, tensor.data()),
        "write " + path);
}

// `tensors` empty = zeros of the parameters' shapes (moments before the first update).
void write_group(hid_t file, const std::string& group, const TensorMap& tensors,
                 const TensorMap& params, hid_t link_create) {
  h5::Handle handle(
      h5::check_id(H5Gcreate2(file, group.c_str(), link_create, H5P_DEFAULT, H5P_DEFAULT),
                   "create " + group),
      H5Gclose);
  if (&tensors != &params && !tensors.empty()) {
    for (const auto& [name, param] : params) {
      auto moment = tensors.find(name);
      if (moment == tensors.end() || moment->second.shape() != param.shape())
        throw std::runtime_error(group + "/" + name + " is missing or its shape differs from " +
                                 shape_string(param.shape()));
    }
    if (tensors.size() != params.size())
      throw std::runtime_error(group + " holds tensors that are not parameters");
  }
  for (const auto& [name, param] : params) {
    const std::string path = group + "/" + name;
    if (tensors.empty()) {
      write_tensor(file, path, Tensor(param.shape()), link_create);
    } else {
      write_tensor(file, path, tensors.at(name), link_create);
    }
  }
}

void write_contents(hid_t file, const CheckpointData& data) {
  h5::Handle link_create = h5::plist(h5::check_id(H5Pcreate(H5P_LINK_CREATE), "link plist"));
  // Names contain '/': their groups are created on the way.
  h5::check(H5Pset_create_intermediate_group(link_create.get(), 1), "intermediate groups");
  write_group(file, "/params", data.params, data.params, link_create.get());
  write_group(file, "/optim/exp_avg", data.exp_avg, data.params, link_create.get());
  write_group(file, "/optim/exp_avg_sq", data.exp_avg_sq, data.params, link_create.get());
  h5::write_string_attribute(file, "format", kFormat);
  h5::write_int64_attribute(file, "version", kVersion);
  h5::write_string_attribute(file, "config", data.config);
  h5::write_int64_attribute(file, "step", data.step);
  h5::check(H5Fflush(file, H5F_SCOPE_GLOBAL), "flush");
}

void write_file(const std::string& path, const CheckpointData& data) {
  h5::Handle access = h5::file_access(false);
  // Strong close: H5Fclose fails instead of leaving the file open behind a forgotten handle.
  h5::check(H5Pset_fclose_degree(access.get(), H5F_CLOSE_STRONG), "close degree");
  const hid_t file = h5::check_id(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access.get()),
                                  "create file " + path);
  try {
    write_contents(file, data);
  } catch (...) {
    H5Fclose(file);
    throw;
  }
  h5::check(H5Fclose(file), "close " + path);
}

void sync_to_disk(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  const bool synced = fd >= 0 && ::fsync(fd) == 0;
  const std::string reason = synced ? "" : std::strerror(errno);
  if (fd >= 0) ::close(fd);
  // A directory fsync is best effort: some file systems refuse it, and the data itself is safe.
  if (!synced && !directory) throw std::runtime_error("fsync " + path + ": " + reason);
}

}  // namespace

void write_checkpoint(const std::string& path, const CheckpointData& data) {
  h5::QuietErrors quiet;
  const std::string temporary = path + ".tmp-" + std::to_string(::getpid());
  try {
    write_file(temporary, data);
    sync_to_disk(temporary, false);
    if (std::rename(temporary.c_str(), path.c_str()) != 0)
      throw std::runtime_error("rename " + temporary + ": " + std::strerror(errno));
  } catch (const std::exception& e) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    throw std::runtime_error("cannot write checkpoint '" + path + "': " + e.what());
  }
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  sync_to_disk(parent.empty() ? "." : parent.string(), true);
}

CheckpointData read_checkpoint(const std::string& path, bool with_optimizer) {
  h5::QuietErrors quiet;
  const std::string described = "checkpoint '" + path + "'";
  h5::Handle file = open_for_reading(path, described);
  CheckpointData data = read_attributes(file.get(), described);
  data.params = read_group(file.get(), "/params", described);
  if (with_optimizer && H5Lexists(file.get(), "optim", H5P_DEFAULT) > 0) {
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
