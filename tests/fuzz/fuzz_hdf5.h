// Writing HDF5 objects whose presence, type and value a fuzzer input chooses (fuzz_shard.cpp,
// fuzz_checkpoint.cpp): the reader's checks are fuzzed on well-formed files, one decision per
// attribute or dataset. Header-only, as fuzz_support.h.
#pragma once
#include <fuzzer/FuzzedDataProvider.h>
#include <hdf5.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_support.h"

namespace hg::fuzz {

// Creates (truncates) an HDF5 file and closes it at the end of the scope.
class File {
 public:
  explicit File(const std::string& path)
      : id_(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) {
    if (id_ < 0) fail("cannot create " + path);
  }
  ~File() { H5Fclose(id_); }
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  hid_t get() const { return id_; }

 private:
  hid_t id_;
};

// An attribute or dataset of `count` elements of `type` from `values` (scalar when rank 0).
inline void write_values(hid_t object, const char* name, hid_t type, int rank,
                         const std::vector<hsize_t>& dims, const void* values, bool dataset) {
  const hid_t space =
      rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims.data(), nullptr);
  const hid_t id =
      dataset ? H5Dcreate2(object, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)
              : H5Acreate2(object, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (id >= 0) {
    dataset ? H5Dwrite(id, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values)
            : H5Awrite(id, type, values);
    dataset ? H5Dclose(id) : H5Aclose(id);
  }
  H5Sclose(space);
}

inline void write_string(hid_t object, const char* name, const std::string& value) {
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  const char* text = value.c_str();
  write_values(object, name, type, 0, {}, &text, false);
  H5Tclose(type);
}

// The integer types a reader may meet, by width and sign.
inline hid_t integer_type(FuzzedDataProvider& in) {
  const hid_t types[] = {H5T_STD_I64LE, H5T_STD_U64LE, H5T_STD_I32LE, H5T_STD_U32LE, H5T_STD_I16LE,
                         H5T_STD_U16LE, H5T_STD_I8LE,  H5T_STD_U8LE,  H5T_STD_I64BE, H5T_STD_U16BE};
  return types[in.ConsumeIntegralInRange<size_t>(0, std::size(types) - 1)];
}

// A string attribute: absent, `valid`, fuzzed text (variable or fixed length), or a number or
// array where a string belongs.
inline void string_attribute(hid_t object, const char* name, FuzzedDataProvider& in,
                             const std::string& valid) {
  switch (in.ConsumeIntegralInRange(0, 6)) {
    case 0:
      return;
    case 1:
      return write_string(object, name, valid);
    case 2:
      return write_string(object, name, in.ConsumeRandomLengthString(64));
    case 3: {
      const std::string text = in.ConsumeRandomLengthString(64);
      const hid_t type = H5Tcopy(H5T_C_S1);
      H5Tset_size(type, std::max<size_t>(text.size(), 1));
      H5Tset_strpad(type, in.ConsumeBool() ? H5T_STR_NULLTERM : H5T_STR_NULLPAD);
      std::string padded = text;
      padded.resize(std::max<size_t>(text.size(), 1));
      write_values(object, name, type, 0, {}, padded.data(), false);
      H5Tclose(type);
      return;
    }
    case 4: {
      const int64_t number = in.ConsumeIntegral<int64_t>();
      return write_values(object, name, H5T_NATIVE_INT64, 0, {}, &number, false);
    }
    case 5: {
      const double number = in.ConsumeFloatingPoint<double>();
      return write_values(object, name, H5T_NATIVE_DOUBLE, 0, {}, &number, false);
    }
    default: {
      const hid_t type = H5Tcopy(H5T_C_S1);
      H5Tset_size(type, H5T_VARIABLE);
      const std::string a = in.ConsumeRandomLengthString(16), b = in.ConsumeRandomLengthString(16);
      const char* texts[] = {a.c_str(), b.c_str()};
      const hsize_t count = in.ConsumeIntegralInRange(0, 2);
      write_values(object, name, type, 1, {count}, texts, false);
      H5Tclose(type);
    }
  }
}

// An integer attribute: absent, `valid`, a fuzzed value of any integer type, a list of 0 to 3
// of them, a float, or a string.
inline void int_attribute(hid_t object, const char* name, FuzzedDataProvider& in, int64_t valid) {
  int64_t values[3] = {valid, in.ConsumeIntegral<int64_t>(), in.ConsumeIntegral<int64_t>()};
  switch (in.ConsumeIntegralInRange(0, 5)) {
    case 0:
      return;
    case 1:
      return write_values(object, name, H5T_STD_I64LE, 0, {}, values, false);
    case 2: {
      const hid_t type = integer_type(in);
      const int64_t converted = in.ConsumeBool() ? valid : values[1];
      return write_values(object, name, type, 0, {}, &converted, false);
    }
    case 3: {
      const hsize_t count = in.ConsumeIntegralInRange(0, 3);
      return write_values(object, name, H5T_NATIVE_INT64, 1, {count}, values, false);
    }
    case 4: {
      const double number =
          in.ConsumeBool() ? static_cast<double>(valid) : in.ConsumeFloatingPoint<double>();
      return write_values(object, name, H5T_NATIVE_DOUBLE, 0, {}, &number, false);
    }
    default:
      return write_string(object, name, std::to_string(valid));
  }
}

// A dataset of a fuzzed type (integers of every width, float, double), rank (0 to 2), extent and
// contents (the input's bytes); or a chunked one whose declared extent (up to 2^40 elements)
// far exceeds what is written, read back as a fuzzed fill value.
inline void fuzzed_dataset(hid_t object, const char* name, FuzzedDataProvider& in) {
  hid_t type =
      in.ConsumeBool() ? integer_type(in) : (in.ConsumeBool() ? H5T_IEEE_F32LE : H5T_IEEE_F64LE);
  if (in.ConsumeIntegralInRange(0, 3) == 0) type = H5T_STD_U8LE;
  const int rank = in.ConsumeIntegralInRange(0, 3) == 0 ? in.ConsumeIntegralInRange(0, 2) : 1;
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 1)));
  for (hsize_t& d : dims) d = in.ConsumeIntegralInRange<hsize_t>(0, 64);
  if (in.ConsumeIntegralInRange(0, 7) == 0) {
    dims[0] = in.ConsumeIntegralInRange<hsize_t>(1, hsize_t{1} << 40);
    std::vector<hsize_t> chunk(dims.size(), 1), max(dims.size(), H5S_UNLIMITED);
    const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), max.data());
    const hid_t create = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(create, static_cast<int>(chunk.size()), chunk.data());
    const uint64_t fill = in.ConsumeIntegral<uint64_t>();
    H5Pset_fill_value(create, H5T_NATIVE_UINT64, &fill);
    const hid_t id = H5Dcreate2(object, name, type, space, H5P_DEFAULT, create, H5P_DEFAULT);
    if (id >= 0) H5Dclose(id);
    H5Pclose(create);
    H5Sclose(space);
    return;
  }
  size_t count = 1;
  for (int i = 0; i < rank; ++i) count *= dims[static_cast<size_t>(i)];
  std::vector<uint8_t> bytes = in.ConsumeBytes<uint8_t>(count * H5Tget_size(type));
  bytes.resize(count * H5Tget_size(type));
  write_values(object, name, type, rank, dims, bytes.data(), true);
}

}  // namespace hg::fuzz
