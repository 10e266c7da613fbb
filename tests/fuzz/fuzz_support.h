// What the libFuzzer harnesses of tests/fuzz share: the contract check (bad input throws
// hg::UsageError, reported with exit 2; any other exception is a finding), a scratch directory
// per process, and file writing. Header-only: each harness is one translation unit.
#pragma once
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <typeinfo>

#include "core/error.h"

namespace hg::fuzz {

// A finding: libFuzzer saves the input that got here.
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "FUZZ FINDING: %s\n", what.c_str());
  std::abort();
}

// Runs `body`; UsageError is the expected answer to bad input, any other exception is a finding
// (the command line would report it as a failure while running, exit 3, or not at all).
template <class Body>
void expect_usage_errors(Body&& body) {
  try {
    body();
  } catch (const UsageError&) {
  } catch (const std::exception& e) {
    fail(std::string("exception other than UsageError (") + typeid(e).name() + "): " + e.what());
  }
}

// A private directory under $TMPDIR (or /tmp), removed with its contents when the process ends
// normally; harnesses empty it between inputs with clear().
class TemporaryDirectory {
 public:
  TemporaryDirectory() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/hg-fuzz-XXXXXX";
    if (!mkdtemp(pattern.data())) fail("cannot create a temporary directory " + pattern);
    path_ = pattern;
  }
  ~TemporaryDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;
  const std::string& path() const { return path_; }
  void clear() const {
    for (const auto& entry : std::filesystem::directory_iterator(path_))
      std::filesystem::remove_all(entry.path());
  }

 private:
  std::string path_;
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) fail("cannot write " + path);
}

}  // namespace hg::fuzz
