#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "parallel/comm.h"
#include "parallel/trace.h"

namespace hg {
namespace {

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(Trace, GathersEveryRankIntoOneChromeTraceFile) {
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  // One path for all ranks: rank 0's, broadcast (only rank 0 writes).
  char path[256] = {};
  if (rank == 0)
    std::snprintf(path, sizeof path, "%s/hg_trace_test_%d.json", HG_BINARY_DIR, int(getpid()));
  comm::broadcast(path, sizeof path, 0, MPI_COMM_WORLD);

  TraceRecorder trace(MPI_COMM_WORLD);
  trace.set_label("rank " + std::to_string(rank) + " (stage \"" + std::to_string(rank) + "\")");
  const double start = trace.now_us();
  EXPECT_GE(start, 0.0);
  trace.record("F0", TraceCategory::Forward, start, 10.0, 0);
  trace.record_since("recv activation", TraceCategory::Recv, start);
  trace.record("idle", TraceCategory::Idle, start + 10, 5.0);
  EXPECT_EQ(trace.events().size(), 3u);
  EXPECT_GE(trace.events()[1].duration_us, 0.0);
  trace.write(path);

  if (rank == 0) {
    std::ifstream file(path);
    ASSERT_TRUE(file) << path;
    std::stringstream buffer;
    buffer << file.rdbuf();
    const std::string json = buffer.str();
    EXPECT_EQ(json.rfind("{\"traceEvents\":[", 0), 0u) << json.substr(0, 100);
    EXPECT_EQ(count(json, "\"ph\":\"X\""), size_t(3 * size));
    EXPECT_EQ(count(json, "\"ph\":\"M\""), size_t(size));
    for (int r = 0; r < size; ++r)
      EXPECT_EQ(count(json, "\"pid\":" + std::to_string(r) + ","), 4u) << "rank " << r;
    EXPECT_EQ(count(json, "\"cat\":\"forward\""), size_t(size));
    EXPECT_EQ(count(json, "\"cat\":\"recv\""), size_t(size));
    EXPECT_EQ(count(json, "\"cat\":\"idle\""), size_t(size));
    EXPECT_EQ(count(json, "\"args\":{\"micro_batch\":0}"), size_t(size));
    EXPECT_NE(json.find("(stage \\\"0\\\")"), std::string::npos);  // escaped label
    // A real JSON parser agrees, when the system Python is there.
    if (access("/usr/bin/python3", X_OK) == 0) {
      const std::string command =
          std::string(
              "/usr/bin/python3 -c \"import json,sys; d=json.load(open(sys.argv[1])); "
              "assert len(d['traceEvents']) == ") +
          std::to_string(4 * size) + "\" " + path;
      EXPECT_EQ(std::system(command.c_str()), 0) << command;
    }
    std::remove(path);
  }
}

TEST(Trace, DisabledRecorderRecordsNothingAndWritesNoFile) {
  TraceRecorder trace(MPI_COMM_WORLD, false);
  trace.record("F0", TraceCategory::Forward, 0, 1);
  EXPECT_TRUE(trace.events().empty());
  const std::string path = std::string(HG_BINARY_DIR) + "/hg_trace_disabled.json";
  trace.write(path);
  EXPECT_NE(access(path.c_str(), F_OK), 0);
}

}  // namespace
}  // namespace hg
