// Helpers for the data tests: a private temporary directory, input files, in-process prep.
#pragma once
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/prep.h"

namespace hg::test {

namespace fs = std::filesystem;

// A fresh directory under /tmp, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/hg-data-test-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

inline void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

inline std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(n);
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  return bytes;
}

// Token ids as a little-endian uint16 file body.
inline std::vector<uint8_t> u16_bytes(const std::vector<int32_t>& ids) {
  std::vector<uint8_t> bytes;
  for (int32_t id : ids) {
    bytes.push_back(static_cast<uint8_t>(id & 0xff));
    bytes.push_back(static_cast<uint8_t>(id >> 8));
  }
  return bytes;
}

inline std::vector<int32_t> random_ids(size_t n, int32_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
  return ids;
}

// Runs `hourglass prep ARGS --quiet` in-process; stdout is swallowed.
inline int run_prep(std::vector<std::string> args) {
  args.push_back("--quiet");
  testing::internal::CaptureStdout();
  try {
    int code = prep_main(args);
    testing::internal::GetCapturedStdout();
    return code;
  } catch (...) {
    testing::internal::GetCapturedStdout();
    throw;
  }
}

// The UsageError message of running prep with ARGS, or "" when prep succeeded.
inline std::string prep_error(const std::vector<std::string>& args) {
  try {
    run_prep(args);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

// Nothing named `name`, and no hidden temporary directory of it, in `parent`.
inline void expect_no_output(const fs::path& parent, const std::string& name) {
  EXPECT_FALSE(fs::exists(parent / name)) << (parent / name);
  for (const auto& entry : fs::directory_iterator(parent)) {
    EXPECT_NE(entry.path().filename().string().rfind("." + name, 0), 0u)
        << "left behind: " << entry.path();
  }
}

template <class T>
std::vector<int32_t> as_ids(const std::vector<T>& values) {
  return std::vector<int32_t>(values.begin(), values.end());
}

}  // namespace hg::test
