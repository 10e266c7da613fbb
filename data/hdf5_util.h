// Small helpers over the HDF5 C API for the data folder: owning handles, quiet error capture,
// and the attribute types of the shard format (ARCHITECTURE.md §4). Internal to data/.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace hg::h5 {

// Owns one HDF5 identifier and closes it with the matching H5*close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& other) noexcept : id_(other.id_), close_(other.close_) {
    other.id_ = H5I_INVALID_HID;
  }
  Handle& operator=(Handle&& other) noexcept;
  ~Handle() { reset(); }
  void reset();
  // Gives up ownership: the caller closes the id (and can check that close).
  hid_t release() {
    hid_t id = id_;
    id_ = H5I_INVALID_HID;
    return id;
  }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

inline Handle file(hid_t id) { return Handle(id, H5Fclose); }
inline Handle dataset(hid_t id) { return Handle(id, H5Dclose); }
inline Handle space(hid_t id) { return Handle(id, H5Sclose); }
inline Handle type(hid_t id) { return Handle(id, H5Tclose); }
inline Handle plist(hid_t id) { return Handle(id, H5Pclose); }
inline Handle attribute(hid_t id) { return Handle(id, H5Aclose); }

// While alive, HDF5 does not print its error stack on this thread; the innermost message of the
// last failure is available from last_error() so that our own messages can quote it.
class QuietErrors {
 public:
  QuietErrors();
  ~QuietErrors();
  QuietErrors(const QuietErrors&) = delete;
  QuietErrors& operator=(const QuietErrors&) = delete;

 private:
  H5E_auto2_t old_func_ = nullptr;
  void* old_data_ = nullptr;
};

// The most specific description on the current error stack ("truncated file: eof = ..."), then
// clears the stack. Empty when the stack is empty.
std::string last_error();

// Throws std::runtime_error("<what>: <last_error()>") when status < 0 (I/O failures: exit 3).
void check(herr_t status, const std::string& what);
hid_t check_id(hid_t id, const std::string& what);

// Attributes of the shard format. Writers use fixed little-endian types and variable-length UTF-8
// strings (what h5py reads as str).
void write_string_attribute(hid_t object, const char* name, const std::string& value);
void write_string_list_attribute(hid_t object, const char* name,
                                 const std::vector<std::string>& values);
void write_int64_attribute(hid_t object, const char* name, int64_t value);
void write_int64_list_attribute(hid_t object, const char* name, const std::vector<int64_t>& values);

// Readers accept any integer type and fixed- or variable-length strings; nullopt when the
// attribute is absent or of another class.
std::optional<std::string> read_string_attribute(hid_t object, const char* name);
std::optional<std::vector<std::string>> read_string_list_attribute(hid_t object, const char* name);
std::optional<int64_t> read_int64_attribute(hid_t object, const char* name);
std::optional<std::vector<int64_t>> read_int64_list_attribute(hid_t object, const char* name);

// "" when `dataset`'s declared extent can be read: its element count does not overflow and,
// unless it is filtered (compressed), the file holds every byte of its data. Otherwise why not
// (" declares shape [2, 3] of 4-byte values but the file holds 0 bytes of its data"). A damaged
// or foreign file may declare an extent far beyond the data it holds (an empty chunked dataset
// of 2^40 elements reads back as fill values); a reader would allocate all of it (found by
// tests/fuzz/fuzz_checkpoint).
std::string missing_data(hid_t dataset);

// A file-access property list; `locking` false lets many readers and a writer coexist
// (HDF5 1.10.7+; the setting is ignored where the file system has no locks).
Handle file_access(bool locking);

}  // namespace hg::h5
