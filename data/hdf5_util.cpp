#include "data/hdf5_util.h"

#include <algorithm>
#include <stdexcept>

namespace hg::h5 {

Handle& Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    reset();
    id_ = other.id_;
    close_ = other.close_;
    other.id_ = H5I_INVALID_HID;
  }
  return *this;
}

void Handle::reset() {
  if (id_ >= 0 && close_ != nullptr) close_(id_);
  id_ = H5I_INVALID_HID;
}

QuietErrors::QuietErrors() {
  H5Eget_auto2(H5E_DEFAULT, &old_func_, &old_data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

QuietErrors::~QuietErrors() { H5Eset_auto2(H5E_DEFAULT, old_func_, old_data_); }

namespace {

herr_t keep_innermost(unsigned /*n*/, const H5E_error2_t* error, void* data) {
  // Walking downward, the last entry visited is where the failure was detected.
  if (error->desc != nullptr && error->desc[0] != '\0')
    *static_cast<std::string*>(data) = error->desc;
  return 0;
}

Handle string_type(H5T_cset_t cset) {
  Handle t = type(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), cset);
  return t;
}

// An attribute's id when it exists, else an invalid handle.
Handle open_attribute(hid_t object, const char* name) {
  QuietErrors quiet;
  if (H5Aexists(object, name) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return {};
  }
  return attribute(H5Aopen(object, name, H5P_DEFAULT));
}

Handle create_attribute(hid_t object, const char* name, hid_t file_type, hid_t space_id) {
  if (H5Aexists(object, name) > 0)
    check(H5Adelete(object, name), std::string("replace attribute ") + name);
  return attribute(check_id(H5Acreate2(object, name, file_type, space_id, H5P_DEFAULT, H5P_DEFAULT),
                            std::string("create attribute ") + name));
}

Handle list_space(size_t n) {
  hsize_t dims[1] = {n};
  return space(H5Screate_simple(1, dims, nullptr));
}

std::optional<std::vector<std::string>> read_strings(hid_t object, const char* name) {
  Handle a = open_attribute(object, name);
  if (!a.valid()) return std::nullopt;
  QuietErrors quiet;
  Handle file_type = type(H5Aget_type(a.get()));
  if (H5Tget_class(file_type.get()) != H5T_STRING) return std::nullopt;
  Handle sp = space(H5Aget_space(a.get()));
  hssize_t n = H5Sget_simple_extent_npoints(sp.get());
  if (n < 0) return std::nullopt;
  std::vector<std::string> values;
  if (H5Tis_variable_str(file_type.get()) > 0) {
    Handle mem = string_type(H5Tget_cset(file_type.get()));
    std::vector<char*> pointers(static_cast<size_t>(n), nullptr);
    if (H5Aread(a.get(), mem.get(), pointers.data()) < 0) {
      H5Eclear2(H5E_DEFAULT);
      return std::nullopt;
    }
    for (char* p : pointers) {
      values.emplace_back(p != nullptr ? p : "");
      H5free_memory(p);
    }
  } else {
    size_t size = H5Tget_size(file_type.get());
    Handle mem = type(H5Tcopy(file_type.get()));
    std::string buffer(size * static_cast<size_t>(n), '\0');
    if (H5Aread(a.get(), mem.get(), buffer.data()) < 0) {
      H5Eclear2(H5E_DEFAULT);
      return std::nullopt;
    }
    for (hssize_t i = 0; i < n; ++i) {
      std::string s = buffer.substr(static_cast<size_t>(i) * size, size);
      s.resize(s.find('\0') == std::string::npos ? s.size() : s.find('\0'));
      values.push_back(s);
    }
  }
  return values;
}

}  // namespace

std::string last_error() {
  std::string message;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, keep_innermost, &message);
  H5Eclear2(H5E_DEFAULT);
  return message;
}

void check(herr_t status, const std::string& what) {
  if (status < 0) throw std::runtime_error("HDF5: " + what + ": " + last_error());
}

hid_t check_id(hid_t id, const std::string& what) {
  if (id < 0) throw std::runtime_error("HDF5: " + what + ": " + last_error());
  return id;
}

void write_string_attribute(hid_t object, const char* name, const std::string& value) {
  Handle t = string_type(H5T_CSET_UTF8);
  Handle sp = space(H5Screate(H5S_SCALAR));
  Handle a = create_attribute(object, name, t.get(), sp.get());
  const char* p = value.c_str();
  check(H5Awrite(a.get(), t.get(), &p), std::string("write attribute ") + name);
}

void write_string_list_attribute(hid_t object, const char* name,
                                 const std::vector<std::string>& values) {
  Handle t = string_type(H5T_CSET_UTF8);
  Handle sp = list_space(values.size());
  Handle a = create_attribute(object, name, t.get(), sp.get());
  std::vector<const char*> pointers;
  for (const auto& v : values) pointers.push_back(v.c_str());
  check(H5Awrite(a.get(), t.get(), pointers.data()), std::string("write attribute ") + name);
}

void write_int64_attribute(hid_t object, const char* name, int64_t value) {
  Handle sp = space(H5Screate(H5S_SCALAR));
  Handle a = create_attribute(object, name, H5T_STD_I64LE, sp.get());
  check(H5Awrite(a.get(), H5T_NATIVE_INT64, &value), std::string("write attribute ") + name);
}

void write_int64_list_attribute(hid_t object, const char* name,
                                const std::vector<int64_t>& values) {
  Handle sp = list_space(values.size());
  Handle a = create_attribute(object, name, H5T_STD_I64LE, sp.get());
  check(H5Awrite(a.get(), H5T_NATIVE_INT64, values.data()), std::string("write attribute ") + name);
}

std::optional<std::string> read_string_attribute(hid_t object, const char* name) {
  auto values = read_strings(object, name);
  if (!values || values->size() != 1) return std::nullopt;
  return values->front();
}

std::optional<std::vector<std::string>> read_string_list_attribute(hid_t object, const char* name) {
  return read_strings(object, name);
}

std::optional<std::vector<int64_t>> read_int64_list_attribute(hid_t object, const char* name) {
  Handle a = open_attribute(object, name);
  if (!a.valid()) return std::nullopt;
  QuietErrors quiet;
  Handle file_type = type(H5Aget_type(a.get()));
  if (H5Tget_class(file_type.get()) != H5T_INTEGER) return std::nullopt;
  Handle sp = space(H5Aget_space(a.get()));
  hssize_t n = H5Sget_simple_extent_npoints(sp.get());
  if (n < 0) return std::nullopt;
  std::vector<int64_t> values(static_cast<size_t>(n));
  if (H5Aread(a.get(), H5T_NATIVE_INT64, values.data()) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return std::nullopt;
  }
  return values;
}

std::optional<int64_t> read_int64_attribute(hid_t object, const char* name) {
  auto values = read_int64_list_attribute(object, name);
  if (!values || values->size() != 1) return std::nullopt;
  return values->front();
}

std::string missing_data(hid_t dataset) {
  Handle space = h5::space(H5Dget_space(dataset)), type = h5::type(H5Dget_type(dataset));
  Handle create = plist(H5Dget_create_plist(dataset));
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 0 || !type.valid()) return " has an unreadable shape or type";
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  std::string extent;
  uint64_t elements = 1, bytes = 0;
  bool overflow = false;
  for (hsize_t n : dims) {
    overflow = overflow || __builtin_mul_overflow(elements, n, &elements);
    extent += (extent.empty() ? "" : ", ") + std::to_string(n);
  }
  // Readers widen to 4-byte floats or ints: that many bytes must fit a 64-bit size with room.
  const uint64_t type_bytes = H5Tget_size(type.get());
  overflow = overflow ||
             __builtin_mul_overflow(elements, std::max<uint64_t>(type_bytes, 4), &bytes) ||
             bytes > (uint64_t{1} << 62);
  const bool filtered = create.valid() && H5Pget_nfilters(create.get()) > 0;
  const uint64_t stored = H5Dget_storage_size(dataset);
  if (!overflow && (filtered || stored >= elements * type_bytes)) return "";
  return " declares shape [" + extent + "] of " + std::to_string(type_bytes) +
         "-byte values but the file holds " + std::to_string(stored) + " bytes of its data";
}

Handle file_access(bool locking) {
  Handle fapl = plist(H5Pcreate(H5P_FILE_ACCESS));
  // ignore_when_disabled = true: on file systems without flock (some Lustre, NFS mounts) opening
  // still works instead of failing with "unable to lock file".
  check(H5Pset_file_locking(fapl.get(), locking, true), "set file locking");
  return fapl;
}

}  // namespace hg::h5
